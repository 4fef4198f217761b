"""eoslab: curvature dynamics of neural-network training (the edge of stability).

The mathematics follows the project's ``docs/methods.md``; every public function cites the
section it implements, and ``docs/architecture.md`` describes the layers.
"""

from eoslab._version import __version__

__all__ = ["__version__", "load_run"]


def __getattr__(name: str):
    # ``eoslab.load_run`` without importing torch-heavy modules at ``import eoslab``
    if name == "load_run":
        from eoslab.run import load_run

        return load_run
    raise AttributeError(f"module 'eoslab' has no attribute {name!r}")
