"""`python -m radtransfer.cli` (as `python -m radtransfer`)."""

from .main import main

raise SystemExit(main())
