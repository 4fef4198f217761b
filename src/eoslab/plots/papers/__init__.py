"""The figures and tables of the three papers, drawn from stored runs only.

Every entry of :data:`FIGURES` reproduces one figure and every entry of :data:`TABLES` one table
of the papers in ``papers/`` (notation of ``docs/methods.md`` §2–§5, §8):

- :mod:`.lowell2022`, *Singularity in the loss landscape*: Figures 1–6 (``l22_fig1`` …
  ``l22_fig6``) and Table 1 (``l22_table1``);
- :mod:`.cohen2021`, Cohen et al., *Edge of stability* (slides): λ_1 → 2/η
  (``cohen_sharpness``), the gradient flow against GD (``cohen_flow_vs_gd``), momentum
  (``cohen_momentum``) and the width/depth/data/initialisation studies (``cohen_studies``);
- :mod:`.lowell2024`, *Layerwise Jacobian alignment*: the Gauss–Newton decomposition (Fig. 1–2,
  ``l24_gauss_newton``), the layerwise components C_ℓ (Fig. 3, ``l24_layerwise``), the five
  factors (I)–(V) (Fig. 4, ``l24_factors``), the alignment and activation ratios
  (``l24_ratios``), the counterfactual sharpness (``l24_counterfactual``) and Table 2
  (``l24_table2``).

Runs come from :func:`load_runs` (:mod:`.runs`: a run directory, a sweep directory or a list
of them). Each figure is registered where it is drawn (:mod:`.registry`: ``@figure(name,
paper=…, caption=…, needs=…)``): ``needs(runs)`` returns None when the runs hold what it draws,
else a short reason; ``draw(runs)`` returns the matplotlib Figure; ``func(runs, out)`` writes
``out.png`` and ``out.pdf`` and returns the paths. A table's ``func(runs, **options)`` returns
Markdown. :func:`render` draws a list of them into a folder (``eoslab plot``, ``eoslab
report``). Fits come from :mod:`eoslab.fits`; drawing helpers from :mod:`.style`. Nothing here
imports model code: everything is read from the run store.
"""

from eoslab.plots.papers.registry import (
    FIGURES,
    TABLES,
    FigureSpec,
    Missing,
    TableSpec,
    figure,
    needs,
    render,
    render_all,
    table,
)
from eoslab.plots.papers.runs import RunData, load_runs, study_labels

# the paper modules register their figures and tables on import, in this order
# isort: off
from eoslab.plots.papers import lowell2022 as lowell2022
from eoslab.plots.papers import cohen2021 as cohen2021
from eoslab.plots.papers import lowell2024 as lowell2024

# isort: on

__all__ = [
    "FIGURES",
    "TABLES",
    "FigureSpec",
    "Missing",
    "RunData",
    "TableSpec",
    "figure",
    "load_runs",
    "needs",
    "render",
    "render_all",
    "study_labels",
    "table",
]
