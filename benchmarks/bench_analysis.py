"""Time of one full post-hoc analysis of a snapshot of the Lowell-2024 network, by component.

Network: MLP depth 6, width 512, ELU, Xavier init scaled by the ELU gain, float64
(``docs/methods.md`` §8), on N samples of the Dice data set (32×32 grey images, 6 classes,
generated offline, ``docs/methods.md`` §9), CE loss, after ``--steps`` GD steps at η = 1/λ_1(θ_0)
so the snapshot is a trained one. Components (each timed separately, same process):

- λ_1(H), λ_1(G), λ_1(H − G): top-1 Lanczos at tol 1e-6 (cold), ``docs/methods.md`` §4;
- per-layer sharpness: λ_1 of each layer's Hessian block;
- the layerwise decomposition (``docs/methods.md`` §5): per-sample s_ℓ, A_ℓ, ‖A_ℓ‖², ‖K_ℓ‖²,
  E‖M‖², C_ℓ, α, γ and the five components.

The issue's budget: under 10 minutes on 2 CPU cores for N = 1000. Results go to
``benchmarks/results/analysis-*.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from eoslab.data import load_dataset
from eoslab.eigen import eigsh
from eoslab.linalg import (
    GaussNewtonOperator,
    HessianOperator,
    RestrictedOperator,
    residual_operator,
)
from eoslab.models import build_model
from eoslab.models.init import init_model
from eoslab.probes.layerwise import layerwise_stats
from eoslab.problem import Problem

HERE = Path(__file__).resolve().parent


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="samples N")
    ap.add_argument("--steps", type=int, default=20, help="GD steps before the snapshot")
    ap.add_argument("--chunk-size", type=int, default=250)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    dtype = torch.float64
    # the train split holds half of the 6·n_per_class images
    ds = load_dataset("dice", n_per_class=max(200, args.n // 3 + 1), dtype=dtype)
    ds = ds.subset(args.n, seed=0).flatten().standardize()
    model = build_model(
        "mlp",
        in_dim=ds.X.shape[1],
        n_out=ds.n_classes,
        depth=6,
        width=512,
        activation="elu",
        dtype=dtype,
    )
    init_model(model, "xavier", seed=0)
    problem = Problem(model, "cross_entropy", ds.X, ds.y, chunk_size=args.chunk_size)
    theta = problem.initial_theta()
    lam0 = eigsh(HessianOperator(problem, theta), 1).eigenvalues[0].item()
    for _ in range(args.steps):
        theta = theta - (1.0 / lam0) * problem.gradient(theta)
    _, tg = timed(lambda: problem.loss_and_gradient(theta))
    rows = []

    def solve(name, build_op):
        def go():
            op = build_op()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return eigsh(op, 1, which="LA", tol=1e-6, seed=0)

        res, sec = timed(go)
        rows.append(
            dict(
                component=name,
                seconds=sec,
                products=res.n_matvecs,
                value=float(res.eigenvalues[0]),
                converged=bool(res.all_converged),
            )
        )

    solve("λ_1(H)", lambda: HessianOperator(problem, theta))
    solve("λ_1(G)", lambda: GaussNewtonOperator(problem, theta))
    solve(
        "λ_1(H − G)",
        lambda: residual_operator(
            HessianOperator(problem, theta), GaussNewtonOperator(problem, theta)
        ),
    )
    H = HessianOperator(problem, theta)
    t_layers = time.perf_counter()
    n_layer_products = 0
    for sl in problem.layout.group_slices().values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = eigsh(RestrictedOperator(H, sl), 1, which="LA", tol=1e-6, seed=0)
        n_layer_products += r.n_matvecs
    rows.append(
        dict(
            component="per-layer sharpness (6 blocks)",
            seconds=time.perf_counter() - t_layers,
            products=n_layer_products,
            value=None,
            converged=None,
        )
    )
    stats, sec = timed(lambda: layerwise_stats(problem, theta, chunk_size=args.chunk_size))
    m = stats.metrics()
    rows.append(
        dict(
            component="layerwise decomposition (§5)",
            seconds=sec,
            products=None,
            value=float(m["EM2"]),
            converged=None,
        )
    )
    total = sum(r["seconds"] for r in rows)
    meta = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        machine=platform.machine(),
        date=time.strftime("%Y-%m-%d %H:%M"),
        argv=" ".join(sys.argv[1:] if argv is None else argv),
        N=problem.N,
        P=problem.size,
        gradient_seconds=tg,
        total_seconds=total,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M")
    (out / f"analysis-{stamp}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    lines = [
        "# One full analysis of a Lowell-2024 snapshot (6×512 ELU, float64)",
        "",
        f"N = {problem.N}, P = {problem.size:,}, torch {meta['torch']}, {meta['threads']} threads, "
        f"{meta['date']}; one gradient = {tg:.3f} s. "
        f"Command: `python benchmarks/bench_analysis.py {meta['argv']}`.",
        "",
        "| component | seconds | share | products | value |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r["seconds"]):
        val = f"{r['value']:.6g}" if r["value"] is not None else ""
        prod = r["products"] if r["products"] is not None else ""
        lines.append(
            f"| {r['component']} | {r['seconds']:.1f} | {r['seconds'] / total:.0%} | "
            f"{prod} | {val} |"
        )
    lines.append(f"| **total** | **{total:.1f}** | | | |")
    md = "\n".join(lines) + "\n"
    (out / f"analysis-{stamp}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
