from xorder.cli import main

raise SystemExit(main())
