"""What a cell runs on: its processes and devices (`distributed`, `fsdp`), its mixed precision, and the
directories it writes to."""
