"""`python -m mira`: the command line."""

from .cli import main

raise SystemExit(main())
