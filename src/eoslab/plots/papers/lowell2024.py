"""Lowell 2024, *Layerwise Jacobian alignment*: Figures 1–4, ratios, counterfactual, Table 2.

Read from post-hoc analysis rows (``eoslab analyze``), else probe rows. These runs are often
exponential Euler (docs/methods.md §7): their time axis is Σ τ and their dimensionless η draws no
line.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from eoslab.fits import power_law_fit
from eoslab.plots.papers import style
from eoslab.plots.papers.peaks import peak_alignment, peak_lambda_1
from eoslab.plots.papers.registry import Missing, figure, needs, table
from eoslab.plots.papers.runs import RunData, finite, has_finite, num

COMPONENTS = ("I", "II", "III", "IV", "V")
_COMPONENT_NAMES = {
    "I": "(I) output $C_L$",
    "II": "(II) activation ratios",
    "III": "(III) layerwise norms",
    "IV": "(IV) coupling",
    "V": "(V) alignment",
}


def _n_colours(runs: list[RunData]) -> dict[Any, Any]:
    return style.colours([r.n_train if r.n_train is not None else -1 for r in runs], "viridis")


def _n_label(run: RunData) -> str:
    return f"N={run.n_train}" if run.n_train is not None else run.name


def _n_colour(colours, run: RunData):
    return colours[run.n_train if run.n_train is not None else -1]


def decomp_runs(runs: list[RunData], key: str) -> list[RunData]:
    """Runs with a finite ``key`` in their analysis (else probe) rows."""
    return [r for r in runs if any(finite(x.get(key)) for x in r.decomposition_rows(key))]


def _n_layers(row: dict[str, Any], prefix: str) -> int:
    n = 0
    while f"{prefix}{n + 1}" in row:
        n += 1
    return n


# ====================================================================== Figures 1–2
@figure(
    "l24_gauss_newton",
    paper="Lowell 2024, Figures 1–2",
    caption="λ_1(H), λ_1(G), λ_1(H − G); E‖M_x‖² and the overlap ratio ζ over training, colour "
    "per N.",
    needs=needs(
        lambda runs: decomp_runs(runs, "lambda_G"),
        "no run has lambda_G (run `eoslab analyze` or probe.gauss_newton)",
    ),
)
def l24_gauss_newton(sel: list[RunData]):
    """Lowell 2024, Figures 1–2 (and 6–13): the Gauss–Newton decomposition over training.

    Left: λ_1(H) solid, λ_1(G) dashed, λ_1(H − G) dotted; middle: E‖M_x‖²; right: the
    overlap ratio ζ = λ_1(G)/E‖M_x‖² (docs/methods.md §4). Colour per data-set size N. Analysis rows
    (post-hoc on snapshots) are used, else probe rows.

    Args:
        sel: the runs with ``lambda_G`` in analysis or probe rows.

    Returns:
        The Figure.
    """
    colours = _n_colours(sel)
    fig, (ax, ax_m, ax_z) = style.panels(3, ncols=3)
    lam_all, m_all = [], []
    for r in sorted(sel, key=lambda r: r.n_train or -1):
        c = _n_colour(colours, r)
        rows = r.decomposition_rows("lambda_G")
        for key, ls in (("lambda_H", "-"), ("lambda_G", "--"), ("lambda_R", ":")):
            t, v = r.series(rows, key)
            if len(t):
                ax.plot(t, v, color=c, ls=ls, lw=1.2, label=_n_label(r) if ls == "-" else None)
                if key != "lambda_R":
                    lam_all.append(v)
        t, m = r.series(rows, "EM2")
        if len(t):
            ax_m.plot(t, m, color=c, lw=1.2, label=_n_label(r))
            m_all.append(m)
        t, z = r.series(rows, "zeta")
        if len(t):
            ax_z.plot(t, z, color=c, lw=1.2, label=_n_label(r))
    ax.set_ylabel("top eigenvalue")
    ax.set_title("sharpness of H, G and H − G", fontsize=10)
    style.legend(
        ax,
        extra=[
            style.proxy("$\\lambda_1(H)$", "-"),
            style.proxy("$\\lambda_1(G)$", "--"),
            style.proxy("$\\lambda_1(H-G)$", ":"),
        ],
    )
    ax_m.set_title("$E\\|M_x\\|^2$", fontsize=10)
    style.log_if_positive(ax_m, *m_all)
    ax_z.set_title("overlap ratio $\\zeta = \\lambda_1(G) / E\\|M_x\\|^2$", fontsize=10)
    ax_z.set_ylim(0.0, 1.05)
    for a in (ax, ax_m, ax_z):
        a.set_xlabel(style.time_label(sel))
    style.legend(ax_m)
    fig.suptitle(
        "Gauss–Newton decomposition: $\\lambda_1(G) = \\zeta\\, E\\|M_x\\|^2$", fontsize=10
    )
    return fig


# ====================================================================== Figure 3
@figure(
    "l24_layerwise",
    paper="Lowell 2024, Figure 3",
    caption="Layerwise components C_ℓ of E‖M_x‖² over training, one subplot per layer.",
    needs=needs(
        lambda runs: decomp_runs(runs, "C_1"),
        "no run has layerwise rows C_ℓ (MLP; `eoslab analyze` or probe.layerwise)",
    ),
)
def l24_layerwise(sel: list[RunData]):
    """Lowell 2024, Figure 3 (and 14–18): the layerwise components C_ℓ = E[s_ℓ‖A_ℓ‖²] over t.

    One subplot per layer ℓ, colour per N; the last subplot compares Σ_ℓ C_ℓ with E‖M_x‖²
    (the triangle inequality, Eq. 8) where recorded.

    Args:
        sel: the runs with ``C_ℓ`` in analysis or probe rows (MLPs).

    Returns:
        The Figure.
    """
    L = max(_n_layers(r.decomposition_rows("C_1")[0], "C_") for r in sel)
    colours = _n_colours(sel)
    has_sum = any(has_finite(r.decomposition_rows("C_1"), "sum_C") for r in sel)
    fig, axes = style.panels(L + int(has_sum), ncols=min(L + int(has_sum), 3))
    for ell in range(1, L + 1):
        ax = axes[ell - 1]
        vals = []
        for r in sorted(sel, key=lambda r: r.n_train or -1):
            t, v = r.series(r.decomposition_rows("C_1"), f"C_{ell}")
            if len(t):
                ax.plot(t, v, color=_n_colour(colours, r), lw=1.2, label=_n_label(r))
                vals.append(v)
        style.log_if_positive(ax, *vals)
        ax.set_title(f"layer {ell}" + (" (output)" if ell == L else ""), fontsize=10)
        ax.set_xlabel(style.time_label(sel))
        ax.set_ylabel(f"$C_{{{ell}}}$")
        style.legend(ax)
    if has_sum:
        ax = axes[-1]
        for r in sel:
            rows = r.decomposition_rows("C_1")
            c = _n_colour(colours, r)
            t, s = r.series(rows, "sum_C")
            ax.plot(t, s, color=c, lw=1.2, label=_n_label(r))
            t, m = r.series(rows, "EM2")
            ax.plot(t, m, color=c, lw=1.0, ls=":")
        ax.set_title("$\\sum_\\ell C_\\ell \\geq E\\|M_x\\|^2$ (Eq. 8)", fontsize=10)
        ax.set_xlabel(style.time_label(sel))
        style.legend(
            ax,
            extra=[
                style.proxy("$\\sum_\\ell C_\\ell$", "-"),
                style.proxy("$E\\|M_x\\|^2$", ":"),
            ],
        )
    fig.suptitle("Layerwise decomposition of $E\\|M_x\\|^2$", fontsize=10)
    return fig


# ====================================================================== Figure 4
def _relative(v: np.ndarray) -> np.ndarray:
    ok = np.flatnonzero(np.isfinite(v) & (v != 0))
    if not len(ok):
        return np.full_like(v, np.nan)
    rel = v / v[ok[0]]
    rel[~(rel > 0)] = np.nan  # log scale
    return rel


@figure(
    "l24_factors",
    paper="Lowell 2024, Figure 4",
    caption="The five components (I)–(V) of C_ℓ relative to their initial value, one subplot "
    "per layer.",
    needs=needs(
        lambda runs: decomp_runs(runs, "comp1_I"),
        "no run has the five components comp<ℓ>_I…V (MLP; `eoslab analyze`)",
    ),
)
def l24_factors(sel: list[RunData]):
    """Lowell 2024, Figure 4 (and 19–22): the five components (I)–(V) of C_ℓ (Eq. 7).

    Each component relative to its first value, on a log scale, one subplot per layer ℓ < L,
    colour per component, one line per run: the alignment (V) grows, (I)–(IV) stay within
    small factors.

    Args:
        sel: the runs with ``comp<ℓ>_<I…V>`` in analysis or probe rows.

    Returns:
        The Figure.
    """
    n_layers = max(
        max(int(m.group(1)) for k in rows[0] if (m := re.fullmatch(r"comp(\d+)_I", k)))
        for rows in (r.decomposition_rows("comp1_I") for r in sel)
    )
    colours = style.colours(list(COMPONENTS), "tab10")
    fig, axes = style.panels(n_layers, ncols=min(n_layers, 3))
    for ell in range(1, n_layers + 1):
        ax = axes[ell - 1]
        for r in sel:
            rows = r.decomposition_rows("comp1_I")
            for comp in COMPONENTS:
                t, v = r.series(rows, f"comp{ell}_{comp}")
                if len(t):
                    ax.plot(
                        t, _relative(v), color=colours[comp], lw=1.1, label=_COMPONENT_NAMES[comp]
                    )
        ax.set_yscale("log")
        ax.set_title(f"layer {ell}", fontsize=10)
        ax.set_xlabel(style.time_label(sel))
        ax.set_ylabel("factor / initial value")
        style.legend(ax)
    fig.suptitle("The five components of $C_\\ell$ (Eq. 7)", fontsize=10)
    return fig


# ====================================================================== ratios
def ratio_runs(runs: list[RunData]) -> list[RunData]:
    """Runs with alignment ratios ``alpha_k`` and activations ``Es_k``."""
    return [
        r
        for r in decomp_runs(runs, "alpha_1")
        if has_finite(r.decomposition_rows("alpha_1"), "Es_2")
    ]


@figure(
    "l24_ratios",
    paper="Lowell 2024, Eq. 6–7",
    caption="Alignment ratios α_k and activation ratios E s_k / E s_{k+1} over training.",
    needs=needs(ratio_runs, "no run has alignment ratios alpha_k and Es_k (MLP; `eoslab analyze`)"),
)
def l24_ratios(sel: list[RunData]):
    """Lowell 2024, Eq. 6–7: alignment ratios α_k and activation ratios E s_k / E s_{k+1}.

    α_k = α(A_{k+1}, K_k) and E s_k / E s_{k+1} over t are the factors of the components (V)
    and (II). Colour per layer k; one line per run.

    Args:
        sel: the runs with ``alpha_k`` and ``Es_k`` in analysis or probe rows.

    Returns:
        The Figure.
    """
    n_alpha = max(_n_layers(r.decomposition_rows("alpha_1")[0], "alpha_") for r in sel)
    colours = style.colours(list(range(1, n_alpha + 1)), "viridis")
    fig, (ax_a, ax_s) = style.panels(2, ncols=2)
    alphas, ratios = [], []
    for r in sel:
        rows = r.decomposition_rows("alpha_1")
        for k in range(1, n_alpha + 1):
            t, a = r.series(rows, f"alpha_{k}")
            if len(t):
                ax_a.plot(t, a, color=colours[k], lw=1.1, label=f"$\\alpha_{{{k}}}$")
                alphas.append(a)
            _, s_k = r.series(rows, f"Es_{k}")
            _, s_next = r.series(rows, f"Es_{k + 1}")
            if len(s_k) and len(s_k) == len(s_next):
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = s_k / s_next
                label = f"$E s_{{{k}}} / E s_{{{k + 1}}}$"
                ax_s.plot(t, ratio, color=colours[k], lw=1.1, label=label)
                ratios.append(ratio)
    style.log_if_positive(ax_a, *alphas)
    style.log_if_positive(ax_s, *ratios)
    ax_a.set_title("alignment ratios $\\alpha_k = \\alpha(A_{k+1}, K_k)$", fontsize=10)
    ax_s.set_title("activation ratios $E s_k / E s_{k+1}$", fontsize=10)
    for ax in (ax_a, ax_s):
        ax.set_xlabel(style.time_label(sel))
        style.legend(ax)
    fig.suptitle("Alignment and activation ratios", fontsize=10)
    return fig


# ====================================================================== counterfactual
def counterfactual_runs(runs: list[RunData]) -> list[RunData]:
    """Runs with ``lambda_G`` rows and a summary holding ``counterfactual_lambda_G``."""
    out = []
    for r in decomp_runs(runs, "lambda_G"):
        s = r.summary or {}
        cf, steps = s.get("counterfactual_lambda_G"), s.get("steps")
        if isinstance(cf, list) and isinstance(steps, list) and cf and len(cf) == len(steps):
            out.append(r)
    return out


@figure(
    "l24_counterfactual",
    paper="Lowell 2024, §5 (counterfactual bound)",
    caption="λ_1(G) against the counterfactual λ̃_1(G) with the alignment frozen, and 2/η. "
    "Exponential-Euler runs draw no threshold: their η is dimensionless and their top "
    "directions are integrated exactly; their t is Σ τ.",
    needs=needs(
        counterfactual_runs,
        "no run has lambda_G and a counterfactual λ̃_1(G) in its analysis summary",
    ),
)
def l24_counterfactual(sel: list[RunData]):
    """Lowell 2024, §5 (counterfactual bound): λ_1(G) against λ̃_1(G) with (V) frozen.

    Left: λ_1(G) solid and the counterfactual λ̃_1(G) = ζ Σ_ℓ C_ℓ V_ℓ(t_0)/V_ℓ(t) dashed
    (``results/analysis_summary.json``), colour per N, with the stability threshold 2/η in
    grey; right: the stable step sizes 2/λ_1(G) and 2/λ̃_1(G) against η. The grey lines
    are drawn for runs whose η is a step; an exponential-Euler run's η is dimensionless (its
    step is τ = η/λ_{k+1} and its top directions have no stability limit), so it adds none.

    Args:
        sel: the runs with ``lambda_G`` rows and a summary with ``counterfactual_lambda_G``.

    Returns:
        The Figure.
    """
    colours = _n_colours(sel)
    fig, (ax, ax_lr) = style.panels(2, ncols=2)
    lams, lrs, etas = [], [], set()
    for r in sorted(sel, key=lambda r: r.n_train or -1):
        c = _n_colour(colours, r)
        t, g = r.series(r.decomposition_rows("lambda_G"), "lambda_G")
        ax.plot(t, g, color=c, lw=1.2, label=_n_label(r))
        tc = np.array([r.time_of(int(s)) for s in r.summary["steps"]], dtype=float)
        cf = np.array([num(v) for v in r.summary["counterfactual_lambda_G"]], dtype=float)
        ax.plot(tc, cf, color=c, lw=1.2, ls="--")
        lams += [g, cf]
        with np.errstate(divide="ignore", invalid="ignore"):
            stable, stable_cf = 2.0 / g, 2.0 / cf
        ax_lr.plot(t, np.where(g > 0, stable, np.nan), color=c, lw=1.2, label=_n_label(r))
        ax_lr.plot(tc, np.where(cf > 0, stable_cf, np.nan), color=c, lw=1.2, ls="--")
        lrs += [stable, stable_cf]
        if r.is_exp_euler:
            continue
        eta = num(r.summary.get("lr"))
        eta = eta if math.isfinite(eta) else r.lr
        if math.isfinite(eta) and eta > 0:
            etas.add(eta)
    for eta in sorted(etas):
        ax.axhline(2.0 / eta, color="0.5", ls="-.", lw=1.0, label=f"2/η, {style.fmt_lr(eta)}")
        ax_lr.axhline(eta, color="0.5", ls="-.", lw=1.0, label=style.fmt_lr(eta))
    style.log_if_positive(ax, *lams)
    style.log_if_positive(ax_lr, *lrs)
    ax.set_title("$\\lambda_1(G)$ and the counterfactual $\\tilde\\lambda_1(G)$", fontsize=10)
    ax.set_ylabel("top eigenvalue of G")
    ax_lr.set_title("stable step $2/\\lambda_1$", fontsize=10)
    ax_lr.set_ylabel("step size")
    extra = [style.proxy("actual", "-"), style.proxy("(V) frozen", "--")]
    for a in (ax, ax_lr):
        a.set_xlabel(style.time_label(sel))
        style.legend(a, extra=extra)
    fig.suptitle("Counterfactual: alignment frozen after the transient", fontsize=10)
    return fig


# ====================================================================== Table 2
_TABLE2_QUANTITIES = (
    ("peak alignment (V)", peak_alignment),
    ("peak λ_1", peak_lambda_1),
)


def table2_groups(runs: list[RunData]) -> dict[tuple[str, str], dict[str, list]]:
    """{(data.name, loss): {quantity: [(N, value)]}} with N > 0 known and value > 0."""
    out: dict[tuple[str, str], dict[str, list]] = {}
    for r in runs:
        if r.n_train is None or r.n_train <= 0:
            continue
        key = (str(r.cfg("data.name", "?")), r.loss_name)
        for qname, fn in _TABLE2_QUANTITIES:
            v = fn(r)
            if math.isfinite(v) and v > 0:
                out.setdefault(key, {}).setdefault(qname, []).append((r.n_train, v))
    return out


def _table2_selection(runs: list[RunData]) -> dict[tuple[str, str], dict[str, list]]:
    groups = table2_groups(runs)
    for quantities in groups.values():
        for pts in quantities.values():
            if len({n for n, _ in pts}) >= 2:
                return groups
    raise Missing(
        "no (data set, criterion) group has runs of ≥ 2 sizes N with a peak alignment or peak "
        "λ_1 (run `eoslab analyze` on the runs)"
    )


@table(
    "l24_table2",
    paper="Lowell 2024, Table 2",
    caption="Power law a·N^b of peak alignment (and peak λ_1) against data-set size, with R².",
    needs=_table2_selection,
)
def l24_table2(groups: dict[tuple[str, str], dict[str, list]]) -> str:
    """Lowell 2024, Table 2: power law P(N) = a·N^b of peak alignment against data-set size.

    For every (data set, criterion) group, fits a·N^b by least squares in log–log space
    (:func:`eoslab.fits.power_law_fit`, as ``eoslab fit``) to the runs' peak alignment
    (summary ``peak_alignment``: the first layer's component (V) after the transient) and to
    their peak λ_1, reporting a, b, R² of the log–log fit and the number of runs
    (docs/methods.md §5, Eq. 9); R² = 1 when every value is equal (``eoslab.fits``). a is
    written with 4 significant digits, b and R² with 3 decimals; a group with fewer than two
    sizes shows dashes.

    Args:
        groups: {(data set, criterion): {quantity: [(N, value)]}} of the runs with a known N
            and an analysis summary (or the rows to take peaks from).

    Returns:
        The Markdown table.
    """
    lines = [
        "| Dataset | Criterion | Quantity | a | b | R² | runs | N |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (data, loss), quantities in sorted(groups.items()):
        for qname, _ in _TABLE2_QUANTITIES:
            pts = quantities.get(qname)
            if not pts:
                continue
            ns = sorted({n for n, _ in pts})
            n_range = f"{ns[0]}–{ns[-1]}" if len(ns) > 1 else f"{ns[0]}"
            crit = style.LOSS_NAMES.get(loss, loss)
            if len(ns) < 2:
                lines.append(f"| {data} | {crit} | {qname} | — | — | — | {len(pts)} | {n_range} |")
                continue
            fit = power_law_fit([n for n, _ in pts], [v for _, v in pts])
            r2s = f"{fit.r2:.3f}" if math.isfinite(fit.r2) else "—"
            lines.append(
                f"| {data} | {crit} | {qname} | {fit.a:.4g} | {fit.b:.3f} | {r2s} | {len(pts)} | "
                f"{n_range} |"
            )
    return "\n".join(lines) + "\n"
