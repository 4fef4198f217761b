"""Figures from stored results only (never model code), as PNG and PDF."""

from eoslab.plots.alignment import plot_alignment
from eoslab.plots.training import plot_sharpness

__all__ = ["plot_alignment", "plot_sharpness"]
