"""The package version, in one place (read by ``eoslab.__version__`` and run environments)."""

__version__ = "0.1.0"
