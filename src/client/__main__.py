"""``python -m client``: the same as the ``expiry-pipeline`` command."""

from client.cli import main

raise SystemExit(main())
