"""Telemetry at θ: spectrum and ρ_i, gradient projections, real ΔL, norms, cusp scan.

``METHODS.md`` §2–3 (Lowell 2022). Everything here returns values (dicts, tensors, a
:class:`ProbeResult`) and writes nothing; the run loop stores them (``DESIGN.md`` rule 4).

- :class:`ProbeSuite` / :class:`ProbeResult`: all telemetry of one probe from one
  warm-started Hessian eigensolve.
- :func:`rho`: ρ_i = λ_i / threshold (NaN for λ_i < 0); :func:`spectrum_metrics`.
- :func:`project`, :func:`projection_metrics`, :func:`loss_changes`: P_top g, P_bulk g,
  |h_i · g| and ΔL = L(θ − η P g) − L(θ).
- :func:`basic_metrics`: loss, accuracy, ‖g‖, ‖θ‖, ‖θ − θ_0‖, test loss and accuracy.
- :func:`cusp_scan`: ΔL(s) = L(θ* + s h_1) − L(θ*) on a grid.
- :func:`table1`: Lowell 2022 Table 1 statistics of one run's probes.
"""

from eoslab.probes.basic import basic_metrics
from eoslab.probes.cusp import cusp_grid, cusp_scan
from eoslab.probes.projections import loss_changes, project, projection_metrics, table1
from eoslab.probes.spectrum import eig_quality_metrics, rho, spectrum_metrics
from eoslab.probes.suite import DEFAULT_TOL, ProbeResult, ProbeSuite

__all__ = [
    "DEFAULT_TOL",
    "ProbeResult",
    "ProbeSuite",
    "basic_metrics",
    "cusp_grid",
    "cusp_scan",
    "eig_quality_metrics",
    "loss_changes",
    "project",
    "projection_metrics",
    "rho",
    "spectrum_metrics",
    "table1",
]
