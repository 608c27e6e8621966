"""`python -m clipsvc.client embed DIR --url URL --out OUT` (and embed-texts, search): see clipsvc.client.cli."""

from .cli import main

raise SystemExit(main())
