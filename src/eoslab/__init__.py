"""eoslab: curvature dynamics of neural-network training (the edge of stability).

The mathematics follows ``METHODS.md`` (shipped with the project documentation); every
public function cites the section it implements.
"""

__version__ = "0.1.0"
