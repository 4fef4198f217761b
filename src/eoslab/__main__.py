"""``python -m eoslab`` is the ``eoslab`` command."""

from eoslab.cli import main

raise SystemExit(main())
