"""``python -m edged`` runs the command line."""

from edged.cli import main

raise SystemExit(main())
