"""Figures from stored results only (never model code), as PNG and PDF."""

from eoslab.plots.spectrum import plot_spectrum

__all__ = ["plot_spectrum"]
