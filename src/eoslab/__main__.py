"""``python -m eoslab`` is the ``eoslab`` command."""

from eoslab.cli import entry

entry()
