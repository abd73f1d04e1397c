"""`python -m bench`: run the whole benchmark and print its table."""

from __future__ import annotations

from bench.run import main

raise SystemExit(main())
