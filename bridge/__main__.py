"""`python -m bridge` runs the od-bridge command line."""

from .cli import main

raise SystemExit(main())
