"""Where the base encoder comes from: a hub id or directory (`base_model`), or one built offline
(`tiny`, `me5`)."""
