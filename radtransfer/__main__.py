"""`python -m radtransfer`."""

from .cli import main

raise SystemExit(main())
