from stress_test.cli import main

raise SystemExit(main())
