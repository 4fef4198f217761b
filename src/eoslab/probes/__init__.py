"""Telemetry at θ: spectrum and ρ_i, gradient projections, real ΔL, norms, cusp scan.

``docs/methods.md`` §2–3 (Lowell 2022). Everything here returns values (dicts, tensors, a
:class:`ProbeResult`) and writes nothing; the run loop stores them
(``docs/architecture.md`` rule 4).

- :class:`ProbeSuite` / :class:`ProbeResult`: all telemetry of one probe from one
  warm-started Hessian eigensolve.
- :func:`rho`: ρ_i = λ_i / threshold (NaN for λ_i < 0); :func:`spectrum_metrics`.
- :func:`project`, :func:`projection_metrics`, :func:`loss_changes`: P_top g, P_bulk g,
  |h_i · g| and ΔL = L(θ − η P g) − L(θ).
- :func:`basic_metrics`: loss, accuracy, ‖g‖, ‖θ‖, ‖θ − θ_0‖, test loss and accuracy.
- :func:`cusp_scan`: ΔL(s) = L(θ* + s h_1) − L(θ*) on a grid.
- :func:`table1`: Lowell 2022 Table 1 statistics of one run's probes.
- :class:`GaussNewtonProbe`: λ_1 of H, G, H − G, per-layer sharpness, ζ (``docs/methods.md`` §4).
- :func:`layerwise_stats`: the layerwise decomposition of MLPs (``docs/methods.md`` §5);
  :func:`per_sample_m_norm_sq`, :func:`per_layer_c` for any architecture.
"""

from eoslab.probes.alignment import alignment_ratio, counterfactual_sharpness
from eoslab.probes.basic import basic_metrics
from eoslab.probes.cusp import CUSP_SOLVER, cusp_grid, cusp_scan
from eoslab.probes.gauss_newton import DEFAULT_GN_SOLVER, GaussNewtonProbe, GaussNewtonResult
from eoslab.probes.jacobians import per_layer_c, per_sample_m_norm_sq
from eoslab.probes.layerwise import LayerwiseStats, is_mlp, layerwise_stats
from eoslab.probes.projections import loss_changes, project, projection_metrics, table1
from eoslab.probes.spectrum import eig_quality_metrics, rho, spectrum_metrics
from eoslab.probes.suite import DEFAULT_SOLVER, ProbeResult, ProbeSuite

__all__ = [
    "alignment_ratio",
    "CUSP_SOLVER",
    "DEFAULT_GN_SOLVER",
    "DEFAULT_SOLVER",
    "GaussNewtonProbe",
    "GaussNewtonResult",
    "LayerwiseStats",
    "counterfactual_sharpness",
    "is_mlp",
    "layerwise_stats",
    "per_layer_c",
    "per_sample_m_norm_sq",
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
