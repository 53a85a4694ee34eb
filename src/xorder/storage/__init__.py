"""Files xorder can trust: every file it leaves behind written whole or not at all (`fileio`), and the
content digests that tell a file it wrote or read from one that changed since (`integrity`)."""
