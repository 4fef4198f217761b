"""Peaks of a run after the initial transient: λ_1 (Lowell 2022) and alignment (Lowell 2024)."""

from __future__ import annotations

import math
import re
from typing import Any

from eoslab.plots.papers.runs import RunData, finite, num, step_of

__all__ = ["TRANSIENT", "peak_alignment", "peak_lambda_1"]

#: Steps ignored as the initial transient when taking peaks (Lowell 2024 §5; docs/methods.md §5).
TRANSIENT = 10


def peak_lambda_1(run: RunData, transient: int = TRANSIENT) -> float:
    """Peak λ_1 after the first ``transient`` steps.

    Taken from the per-step, probe or analysis rows, else the summary's ``peak_lambda_1``.
    """
    best = math.nan
    for rows, key in ((run.steps, "sharpness"), (run.probes, "lambda_1")):
        vals = [num(r.get(key)) for r in rows if step_of(r) >= transient]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            best = max(vals) if not math.isfinite(best) else max(best, *vals)
    if math.isfinite(best):
        return best
    if run.summary and finite(run.summary.get("peak_lambda_1")):
        return float(run.summary["peak_lambda_1"])
    vals = [num(r.get("lambda_H")) for r in run.analysis if step_of(r) >= transient]
    vals = [v for v in vals if math.isfinite(v)]
    return max(vals) if vals else math.nan


def _alignment_layer(row: dict[str, Any]) -> int | None:
    layers = [int(m.group(1)) for k in row if (m := re.fullmatch(r"comp(\d+)_V", k))]
    return min(layers) if layers else None


def peak_alignment(run: RunData, transient: int = TRANSIENT) -> float:
    """Peak alignment (V) of the first layer.

    The summary's ``peak_alignment``, else the maximum of ``comp<ℓ>_V`` over the analysis (or
    probe) rows after the transient.
    """
    if run.summary and finite(run.summary.get("peak_alignment")):
        return float(run.summary["peak_alignment"])
    for rows in (run.analysis, run.probes):
        kept = [r for r in rows if step_of(r) >= transient]
        layer = _alignment_layer(kept[0]) if kept else None
        if layer is None:
            continue
        vals = [num(r.get(f"comp{layer}_V")) for r in kept]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            return max(vals)
    return math.nan
