"""``python -m mantra.sim <venue> [--fault SECONDS:NAME[:ARG]] ...``: serve one venue from a shell."""

from .spawn import main

raise SystemExit(main())
