from aksinf.cli import main

raise SystemExit(main())
