from livefake.cli import main

raise SystemExit(main())
