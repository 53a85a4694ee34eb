#!/usr/bin/env python
"""Result tables from the run records: `python scripts/make_tables.py [--results DIR] [--out DIR] [--strict] ...`,
every option of `xorder report` (--help lists them). The same code as `xorder report` (xorder.report.main)."""

import sys

from xorder.report import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
