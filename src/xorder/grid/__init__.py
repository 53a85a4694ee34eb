"""The commands around a grid of cells: `xorder prepare`, `xorder status`, `xorder cache`, and what
`xorder run -m` says before and after (`summary`)."""
