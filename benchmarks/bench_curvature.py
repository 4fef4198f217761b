"""Curvature-engine benchmark: gradient, HVP and top-k eigensolves, eoslab vs its peers.

Run with ``make bench`` (or ``python benchmarks/bench_curvature.py --help``). Everything in a
table is measured side by side in one run on one machine, so ratios are comparable even when
absolute times are not. Results go to ``benchmarks/results/`` as JSON and Markdown.

Problems (issue "Curvature engine"):
- ``mlp-small``: MLP 64→3×64 tanh→10 on N=512 digits images (embedded data), CE, float64.
- ``mlp-eos``: MLP 3072→5×512 ELU→10 on N=256 Gaussian inputs, CE, float32 and float64
  (P = 2,629,130).
Each at initialisation and after 200 GD steps at η = 1/λ_1(θ_0); "warm" solves start from the
previous solve's vectors after one more GD step.

Accuracy is the largest relative error of the returned top-k eigenvalues against a tight
float64 reference (eoslab's Lanczos at tol 1e-10 on the float64 Hessian at the same θ; the
operator itself is checked against dense autograd Hessians in the test suite).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eoslab.data import load_dataset
from eoslab.eigen import eigsh, lanczos
from eoslab.linalg import HessianOperator
from eoslab.models import build_model
from eoslab.problem import Problem

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import best_time, clock, describe_device, select_device  # noqa: E402  (benchmarks/timing.py)


def build_problem(name: str, dtype: torch.dtype, device: str = "cpu") -> Problem:
    """The benchmark problems, seeded (data drawn on the CPU, so every device gets the same)."""
    torch.manual_seed(0)
    if name == "mlp-small":
        ds = load_dataset("digits").subset(512, seed=0).flatten().standardize().to(dtype=dtype)
        model = build_model("mlp", in_dim=64, n_out=10, depth=4, width=64, activation="tanh")
        X, y = ds.X, ds.y
    elif name == "mlp-eos":
        model = build_model("mlp", in_dim=3072, n_out=10, depth=6, width=512, activation="elu")
        g = torch.Generator().manual_seed(0)
        X = torch.randn(256, 3072, generator=g, dtype=dtype)
        y = torch.randint(0, 10, (256,), generator=g)
    else:
        raise ValueError(f"unknown problem {name!r}")
    model = model.to(device=device, dtype=dtype)
    return Problem(model, "cross_entropy", X.to(device=device, dtype=dtype), y.to(device))


def reference(problem: Problem, theta: torch.Tensor, k: int) -> np.ndarray:
    """Tight float64 top-k eigenvalues at θ (Lanczos, tol 1e-10)."""
    if problem.dtype != torch.float64:
        model64 = problem.model.to(torch.float64)
        p64 = Problem(model64, problem.criterion, problem.X.double(), problem.y)
        problem.model.to(problem.dtype)
        theta = theta.double()
    else:
        p64 = problem
    H = HessianOperator(p64, theta)
    res = lanczos(H, k, which="LA", tol=1e-10, max_iter=2000, seed=123)
    res.require_converged()
    return res.eigenvalues.cpu().numpy()


def rel_err(found, ref) -> float:
    found = np.asarray(found, dtype=np.float64)[: len(ref)]
    if len(found) < len(ref) or not np.all(np.isfinite(found)):
        return float("inf")
    return float(np.max(np.abs(found - ref) / np.abs(ref)))


def gd(problem: Problem, theta: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    for _ in range(steps):
        theta = theta - lr * problem.gradient(theta)
    return theta


def run_ours(problem, theta, k, ref, v0=None, method="lobpcg"):
    t0 = clock()
    H = HessianOperator(problem, theta)  # building the graph is part of the cost
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = eigsh(H, k, method=method, which="LA", v0=v0, seed=0)
    sec = clock() - t0
    return dict(
        seconds=sec,
        n_matvecs=res.n_matvecs,
        rel_err=rel_err(res.eigenvalues.cpu().numpy(), ref),
        converged=bool(res.all_converged),
    ), res


def torch_model_and_loss(problem: Problem, theta: torch.Tensor) -> nn.Module:
    model = problem.model
    problem.layout.load_into(model, theta)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", default="mlp-small:f64,mlp-eos:f32,mlp-eos:f64")
    ap.add_argument("--states", default="init,gd200")
    ap.add_argument("--no-peers", action="store_true", help="skip curvlinops/eigenthings/PyHessian")
    ap.add_argument("--peer-budget", type=float, default=600.0, help="seconds per peer solve")
    ap.add_argument("--gd-steps", type=int, default=200)
    ap.add_argument(
        "--methods", default="lanczos,lobpcg", help="eoslab solvers to time (comma-separated)"
    )
    ap.add_argument("--device", default="cpu", help="torch device of every solver: cpu, cuda")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    try:
        select_device(args.device)
    except ValueError as err:
        ap.error(str(err))

    try:
        import peers  # benchmarks/peers.py

        available = [] if args.no_peers else peers.available_peers()
    except ImportError:
        peers, available = None, []

    rows = []
    meta = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        machine=platform.machine(),
        processor=platform.processor() or platform.machine(),
        device=describe_device(args.device),
        date=time.strftime("%Y-%m-%d %H:%M"),
        argv=" ".join(sys.argv[1:] if argv is None else argv),
        peers={p: peers.peer_version(p) for p in available} if peers else {},
    )
    for item in args.problems.split(","):
        name, dt = item.split(":")
        dtype = {"f32": torch.float32, "f64": torch.float64}[dt]
        problem = build_problem(name, dtype, args.device)
        theta0 = problem.initial_theta()
        lam1 = reference(problem, theta0, 1)[0]
        lr = float(1.0 / lam1)
        for state in args.states.split(","):
            theta = theta0 if state == "init" else gd(problem, theta0, lr, args.gd_steps)
            theta_next = gd(problem, theta, lr, 1)
            row = dict(problem=name, dtype=dt, state=state, P=problem.size, lr=lr)
            tg = best_time(lambda pb=problem, th=theta: pb.loss_and_gradient(th))
            H = HessianOperator(problem, theta)
            gen = torch.Generator().manual_seed(1)
            V = torch.randn(20, problem.size, dtype=dtype, generator=gen).T.to(args.device)
            t1 = best_time(lambda H=H, V=V: H.matmat(V[:, :1]))
            t20 = best_time(lambda H=H, V=V: H.matmat(V), reps=2)
            row.update(grad_s=tg, hvp_single_x=t1 / tg, hvp_block20_per_vec_x=t20 / 20 / tg)
            for k in (1, 20):
                ref = reference(problem, theta, k)
                ref_next = reference(problem, theta_next, k)
                row[f"top{k}"] = entry = dict(ref=ref.tolist())
                for method in args.methods.split(","):
                    cold, res = run_ours(problem, theta, k, ref, method=method)
                    warm, _ = run_ours(
                        problem, theta_next, k, ref_next, v0=res.warm_start, method=method
                    )
                    entry[f"eoslab-{method}_cold"] = cold
                    entry[f"eoslab-{method}_warm"] = warm
                for peer in available:
                    for settings in ("default", "tuned"):
                        model = torch_model_and_loss(problem, theta)
                        out = peers.run_peer(
                            peer,
                            model,
                            peers.loss_for(problem.criterion.name),
                            problem.X,
                            problem.y,
                            k,
                            settings=settings,
                            seed=0,
                            time_budget=args.peer_budget,
                        )
                        row[f"top{k}"][f"{peer}_{settings}"] = dict(
                            seconds=out["seconds"],
                            n_matvecs=out["n_matvecs"],
                            rel_err=rel_err(out["eigenvalues"], ref),
                            notes=out.get("notes", ""),
                        )
                print(json.dumps({k_: v for k_, v in row.items()}, default=float), flush=True)
            rows.append(row)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M")
    (out_dir / f"curvature-{stamp}.json").write_text(
        json.dumps(dict(meta=meta, rows=rows), indent=1)
    )
    md = render_markdown(meta, rows)
    (out_dir / f"curvature-{stamp}.md").write_text(md)
    (out_dir / "curvature-latest.md").write_text(md)
    print(md)
    return 0


def render_markdown(meta, rows) -> str:
    device = meta.get("device", f"{meta['threads']} threads")  # older files: no device
    lines = [
        "# Curvature benchmark",
        "",
        f"torch {meta['torch']}, {device}, "
        f"{meta['processor']}, {meta['date']}; "
        f"peers: {meta['peers'] or 'none installed'}.",
        f"Command: `python benchmarks/bench_curvature.py {meta.get('argv', '')}` (`make bench` runs all).",
        "",
        "## Products (ratios to one gradient, same run)",
        "",
        "| problem | dtype | state | P | gradient s | HVP single ÷ grad | HVP per vector, block of 20 ÷ grad |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['dtype']} | {r['state']} | {r['P']:,} | {r['grad_s']:.4f} | "
            f"{r['hvp_single_x']:.2f} | {r['hvp_block20_per_vec_x']:.2f} |"
        )
    lines += [
        "",
        "## Top-k eigenvalues: seconds / operator applications / max relative error",
        "",
        "| problem | dtype | state | k | solver | seconds | matvecs | rel. error | ÷ fastest peer reaching 1e-4 (cold) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for k in (1, 20):
            entry = r.get(f"top{k}")
            if not entry:
                continue
            peers_ok = [
                v["seconds"]
                for key, v in entry.items()
                if key != "ref" and not key.startswith("eoslab") and v["rel_err"] <= 1e-4
            ]
            fastest = min(peers_ok) if peers_ok else None
            for key, v in entry.items():
                if key == "ref":
                    continue
                ratio = f"{v['seconds'] / fastest:.3f}" if fastest else "–"
                mv = v["n_matvecs"] if v["n_matvecs"] is not None else "?"
                lines.append(
                    f"| {r['problem']} | {r['dtype']} | {r['state']} | {k} | {key} | "
                    f"{v['seconds']:.2f} | {mv} | {v['rel_err']:.1e} | {ratio} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
