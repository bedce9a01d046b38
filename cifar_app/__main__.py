from cifar_app.cli import main

raise SystemExit(main())
