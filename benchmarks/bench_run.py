"""Cost of the run loop's curvature work in gradient equivalents (issue "Training runs").

Two figures, each measured side by side with the gradient of the same problem in one process:

1. A full Lowell-2022 probe, warm: top-k Hessian eigenpairs (k = 20) warm-started from the
   previous probe, the top/bulk gradient projections and the three real loss changes ΔL_top,
   ΔL_bulk, ΔL_full (``METHODS.md`` §3). The trajectory is GD at η = 1.9/λ_1(θ_0) on
   digits-mlp (so it sharpens to the edge of stability; 1/λ_1 on mlp-eos, where 1.9/λ_1
   diverges); probes are 1/η steps apart, as in the paper. Each eigensolver of
   ``--probe-methods`` (default Lanczos and LOBPCG) probes the same θ, each warm-started from
   its own previous probe.
2. An exponential-Euler step (k = 10, ``METHODS.md`` §7) averaged over a run of steps,
   each warm-started from the previous step's eigenvectors, with these eigensolves: the
   default (Lanczos, every pair verified to a relative residual of 1e-6), LOBPCG at the same
   residual, and Lowell 2024
   §7.1's procedure (block power iteration stopped when the eigenvalues changed by less than
   1e-3·max|Λ| from the previous step's, ``eig_method: block_power``,
   ``eig_criterion: eigenvalue_change``), with its largest relative residual reported so the
   price of not verifying is visible.

Two more measurements bound what any probe or step can cost, for the issue's targets:

3. Alongside every warm probe, a one-block probe: one block product of the previous verified
   probe's block and a Rayleigh–Ritz step (``method="block_power", max_iter=1``: 20 pairs +
   5 guard columns, nothing verified), with its largest relative residual and its largest
   eigenvalue error against the verified probe at the same θ (a best case: a run of such
   probes would start from its own unverified blocks).
4. The cost of one Hessian-vector product per vector, in blocks of 1, 10 and 20, by the
   library's algorithm (one backward pass over the cached graph of g per vector, ``METHODS.md``
   §1) and by forward-over-reverse differentiation vectorised over the block
   (``torch.func.vmap`` of ``jvp(grad)``, which shares the primal passes across the block).

"Gradient equivalents" = seconds ÷ (seconds of one ``loss_and_gradient`` at the same θ, best
of 5). Results go to ``benchmarks/results/run-costs-*.{json,md}``.

Problems: ``digits-mlp`` (the demo network: 64→2×200 tanh→10, MSE, 1,000 digits, float64)
and ``mlp-eos`` (3072→5×512 ELU→10, CE, 256 Gaussian inputs, float64; heavy).
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

from eoslab.dynamics import ExponentialEuler
from eoslab.eigen import SOLVERS, eigsh
from eoslab.linalg import HessianOperator
from eoslab.probes import ProbeSuite
from eoslab.run import parse_config
from eoslab.run.build import build

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import clock, describe_device, select_device  # noqa: E402  (benchmarks/timing.py)

#: Eigensolvers of the probes, compared side by side, unless --probe-methods says otherwise
#: (the first is the probes' default).
METHOD = "lanczos"
PROBE_METHODS = (METHOD, "lobpcg")


def build_problem(name: str, device: str = "cpu"):
    """(problem, number of classes, η·λ_1(θ_0)) of a benchmark problem on ``device``."""
    if name == "digits-mlp":
        cfg = parse_config(
            {
                "device": device,
                "data": {"n_train": 1000},
                "model": {
                    "width": 200,
                    "depth": 3,
                    "activation": "tanh",
                    "init": "pytorch_default",
                },
            }
        )
        return build(cfg).problem, 10, 1.9
    if name == "mlp-eos":
        from bench_curvature import build_problem as curvature_problem

        # η = 1/λ_1(θ_0) as in bench_curvature: 1.9/λ_1 diverges on this CE problem
        return curvature_problem("mlp-eos", torch.float64, device), 10, 1.0
    raise ValueError(f"unknown problem {name!r}")


def grad_seconds(problem, theta, reps: int = 5) -> float:
    problem.loss_and_gradient(theta)
    best = float("inf")
    for _ in range(reps):
        t0 = clock()
        problem.loss_and_gradient(theta)
        best = min(best, clock() - t0)
    return best


def bench_probe(problem, n_classes, *, k, n_probes, warmup_steps, lr_factor=1.9, methods=(METHOD,)):
    """Cold and warm probes of each eigensolver in ``methods``, side by side at the same θ.

    Every method keeps its own warm-start block; the one-block probe starts from the first
    method's verified block.
    """
    theta0 = problem.initial_theta()
    lam1 = eigsh(HessianOperator(problem, theta0), 1).eigenvalues[0].item()
    lr = lr_factor / lam1
    every = max(1, round(1 / lr))
    theta = theta0
    for _ in range(warmup_steps):
        theta = theta - lr * problem.gradient(theta)
    suites = {m: ProbeSuite(k=k, n_classes=n_classes, method=m) for m in methods}
    one_block = ProbeSuite(k=k, n_classes=n_classes, method="block_power", max_iter=1)
    rows = {m: [] for m in methods}
    v0 = dict.fromkeys(methods)
    blocks = []
    for i in range(n_probes + 1):
        tg = grad_seconds(problem, theta)
        verified = {}
        for m, suite in suites.items():
            t0 = clock()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = suite(problem, theta, lr=lr, threshold=2 / lr, theta0=theta0, v0=v0[m])
            sec = clock() - t0
            rows[m].append(
                dict(
                    warm=i > 0,
                    solver=res.eig.method,
                    seconds=sec,
                    grad_s=tg,
                    grad_equiv=sec / tg,
                    n_matvecs=res.n_matvecs,
                    converged=bool(res.metrics["eig_converged"]),
                    lambda_1=res.metrics["lambda_1"],
                )
            )
            verified[m] = res
        first = methods[0]
        if v0[first] is not None:  # a one-block warm probe, from the same start block
            t0 = clock()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fast = one_block(
                    problem, theta, lr=lr, threshold=2 / lr, theta0=theta0, v0=v0[first]
                )
            lam = verified[first].eig.eigenvalues
            blocks.append(
                dict(
                    grad_equiv=(clock() - t0) / tg,
                    n_matvecs=fast.n_matvecs,
                    max_rel_residual=fast.metrics["eig_residual_max"],
                    max_lambda_error=float(
                        ((fast.eig.eigenvalues - lam).abs() / lam[0].abs()).max()
                    ),
                )
            )
        v0 = {m: r.eig.warm_start for m, r in verified.items()}
        for _ in range(every):
            theta = theta - lr * problem.gradient(theta)

    def summary(method_rows):
        warm = [r for r in method_rows if r["warm"]]
        return dict(
            cold=method_rows[0],
            warm_mean_grad_equiv=float(np.mean([r["grad_equiv"] for r in warm])),
            warm_mean_matvecs=float(np.mean([r["n_matvecs"] for r in warm])),
            all_converged=all(r["converged"] for r in method_rows),
            warm=warm,
        )

    return dict(
        lr=lr,
        probe_every=every,
        k=k,
        methods={m: summary(r) for m, r in rows.items()},
        one_block_method=methods[0],
        one_block_mean_grad_equiv=float(np.mean([b["grad_equiv"] for b in blocks])),
        one_block_matvecs=blocks[0]["n_matvecs"],
        one_block_max_rel_residual=float(max(b["max_rel_residual"] for b in blocks)),
        one_block_max_lambda_error=float(max(b["max_lambda_error"] for b in blocks)),
    )


def bench_products(problem, blocks=(1, 10, 20), reps: int = 3):
    """Seconds per Hessian-vector product ÷ one gradient, by algorithm and block size.

    ``graph``: the library's :class:`HessianOperator` (graph of g built once, not timed
    here; one backward pass per vector). ``forward_over_reverse``: ``vmap`` over the block
    of ``jvp(grad(L))`` at θ, one call per block (it recomputes g's graph each call, so its
    time includes that). Both give H V to round-off (checked).
    """
    from timing import best_time
    from torch.func import grad, jvp, vmap

    theta = problem.initial_theta()
    tg = grad_seconds(problem, theta)
    op = HessianOperator(problem, theta)
    chunks = list(problem.chunks())

    def fwd_rev(Vt):  # [b, P] -> [b, P]
        out = torch.zeros_like(Vt)
        for X, y in chunks:
            g = grad(lambda t, X=X, y=y: problem.chunk_loss_sum(t, X, y) / problem.N)
            out += vmap(lambda v, g=g: jvp(g, (theta,), (v,))[1])(Vt)
        return out

    gen = torch.Generator(device="cpu").manual_seed(0)
    rows = []
    for b in blocks:
        V = torch.randn(problem.size, b, generator=gen, dtype=problem.dtype).to(problem.device)
        Vt = V.T.contiguous()
        ref = op.matmat(V).T
        err = float((fwd_rev(Vt) - ref).abs().max() / ref.abs().max())
        rows.append(
            dict(
                block=b,
                graph=best_time(lambda V=V: op.matmat(V), reps) / tg / b,
                forward_over_reverse=best_time(lambda Vt=Vt: fwd_rev(Vt), reps) / tg / b,
                max_rel_difference=err,
            )
        )
    return rows


def bench_exp_euler(problem, *, k, steps, lr, **solver):
    integ = ExponentialEuler(lr, k=k, **solver)
    theta = problem.initial_theta()
    state = integ.init_state(problem, theta)
    tg = grad_seconds(problem, theta)
    secs, mvs, rres = [], [], []
    for _ in range(steps):
        t0 = clock()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = integ.step(problem, theta, state)
        secs.append(clock() - t0)
        mvs.append(r.n_matvecs)
        rres.append(top_k_residual(problem, theta, r.state["exp_euler_v"][:, :k]))
        theta, state = r.theta, r.state
    return dict(
        k=k,
        lr=lr,
        steps=steps,
        grad_s=tg,
        first_step_grad_equiv=secs[0] / tg,
        mean_grad_equiv=float(np.mean(secs) / tg),
        mean_grad_equiv_after_first=float(np.mean(secs[1:]) / tg),
        mean_matvecs=float(np.mean(mvs)),
        max_rel_residual=float(np.max(rres)),
        final_loss=float(problem.loss(theta)),
    )


def top_k_residual(problem, theta, V):
    """max_i ‖H v_i − (v_iᵀ H v_i) v_i‖ / |v_iᵀ H v_i| of the step's k vectors (not timed)."""
    HV = HessianOperator(problem, theta).matmat(V)
    rq = (V * HV).sum(0)
    return float((torch.linalg.vector_norm(HV - V * rq, dim=0) / rq.abs()).max())


def md_table(intro: str | None, header: list[str], rows: list[list]) -> list[str]:
    """Lines of a Markdown table (after a blank line and an optional intro paragraph)."""
    lines = [""] + ([intro, ""] if intro else [])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", default="digits-mlp,mlp-eos")
    ap.add_argument("--probes", type=int, default=5, help="warm probes measured")
    ap.add_argument("--warmup-steps", type=int, default=200)
    ap.add_argument("--ee-steps", type=int, default=30, help="exponential-Euler steps")
    ap.add_argument(
        "--probe-methods",
        default=",".join(PROBE_METHODS),
        help="eigensolvers of the probes, compared side by side (comma-separated; "
        f"of {', '.join(sorted(SOLVERS))})",
    )
    ap.add_argument("--device", default="cpu", help="torch device of every problem: cpu, cuda")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    try:
        select_device(args.device)
    except ValueError as err:
        ap.error(str(err))
    methods = [m for m in args.probe_methods.split(",") if m]
    unknown = sorted(set(methods) - set(SOLVERS))
    if not methods or unknown:
        ap.error(
            f"--probe-methods: unknown {unknown or 'none given'}; choose from {sorted(SOLVERS)}"
        )
    meta = dict(
        device=describe_device(args.device),
        probe_methods=methods,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        machine=platform.machine(),
        date=time.strftime("%Y-%m-%d %H:%M"),
        argv=" ".join(sys.argv[1:] if argv is None else argv),
    )
    results = {}
    for name in args.problems.split(","):
        problem, n_c, lr_factor = build_problem(name, args.device)
        probe = bench_probe(
            problem,
            n_c,
            k=20,
            n_probes=args.probes,
            warmup_steps=args.warmup_steps,
            lr_factor=lr_factor,
            methods=methods,
        )
        ee = bench_exp_euler(problem, k=10, steps=args.ee_steps, lr=1.0)
        ee_lobpcg = bench_exp_euler(problem, k=10, steps=args.ee_steps, lr=1.0, method="lobpcg")
        paper = dict(method="block_power", criterion="eigenvalue_change")
        ee_paper, ee_loose = (
            bench_exp_euler(problem, k=10, steps=args.ee_steps, lr=1.0, tol=tol, **paper)
            for tol in (1e-3, 1e-2)
        )
        results[name] = dict(
            P=problem.size,
            N=problem.N,
            probe=probe,
            exp_euler=ee,
            exp_euler_lobpcg=ee_lobpcg,
            exp_euler_paper=ee_paper,
            exp_euler_loose=ee_loose,
            products=bench_products(problem),
        )
        print(json.dumps({name: {k: v for k, v in results[name].items()}}, default=float))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M")
    (out / f"run-costs-{stamp}.json").write_text(
        json.dumps(dict(meta=meta, results=results), indent=1)
    )
    lines = [
        "# Run-loop costs in gradient equivalents",
        "",
        f"torch {meta['torch']}, {meta['device']}, {meta['date']}. "
        f"Command: `python benchmarks/bench_run.py {meta['argv']}`.",
    ]
    probe_rows, block_rows, product_rows, step_rows = [], [], [], []
    for name, r in results.items():
        p = r["probe"]
        for method, q in p["methods"].items():
            probe_rows.append(
                [name, method, f"{r['P']:,}", r["N"], f"{q['warm_mean_grad_equiv']:.1f}"]
                + [f"{q['warm_mean_matvecs']:.0f}", f"{q['cold']['grad_equiv']:.1f}"]
                + [q["cold"]["n_matvecs"], "yes" if q["all_converged"] else "no", "≤ 30"]
            )
        block_rows.append(
            [name, p["one_block_method"], f"{p['one_block_mean_grad_equiv']:.1f}"]
            + [p["one_block_matvecs"]]
            + [f"{p['one_block_max_rel_residual']:.1e}", f"{p['one_block_max_lambda_error']:.1e}"]
        )
        for q in r["products"]:
            product_rows.append(
                [name, q["block"], f"{q['graph']:.2f}", f"{q['forward_over_reverse']:.2f}"]
                + [f"{q['max_rel_difference']:.0e}"]
            )
        for label, e in (
            ("Lanczos, residual 1e-6 (default)", r["exp_euler"]),
            ("LOBPCG, residual 1e-6", r["exp_euler_lobpcg"]),
            ("block power, eigenvalue change 1e-3 (Lowell 2024 §7.1)", r["exp_euler_paper"]),
            ("block power, eigenvalue change 1e-2", r["exp_euler_loose"]),
        ):
            step_rows.append(
                [name, label, f"{e['mean_grad_equiv']:.1f}", f"{e['mean_matvecs']:.1f}"]
                + [f"{e['mean_grad_equiv_after_first']:.1f}", f"{e['max_rel_residual']:.1e}"]
                + [f"{e['final_loss']:.6g}", "≤ 15"]
            )
    tables = [
        (
            f"Full probes (top-20 + projections + 3 ΔL), {args.probes} warm ones 1/η steps apart "
            "after a cold one, every eigensolver at the same θ; eigenpairs verified to a "
            "relative residual of 1e-4:",
            ["problem", "eigensolver", "P", "N", "warm: grad. equiv.", "products"]
            + ["cold: grad. equiv.", "products", "all converged", "target"],
            probe_rows,
        ),
        (
            "A one-block warm probe (one product of the previous verified probe's 25-vector "
            "block, Rayleigh–Ritz, nothing verified), from the same start as each warm probe "
            "above (of the eigensolver named); a run of such probes would start from unverified "
            "blocks, so its errors are a best case:",
            ["problem", "block from", "grad. equiv.", "products", "max relative residual"]
            + ["max eigenvalue error ÷ λ_1"],
            block_rows,
        ),
        (
            "One Hessian-vector product per vector ÷ one gradient (at θ_0), by algorithm and "
            "block size (the graph's build, one gradient, is not timed in its column; "
            "forward-over-reverse rebuilds g in every call):",
            ["problem", "block", "graph (the library's)", "forward-over-reverse, vmapped"]
            + ["max relative difference"],
            product_rows,
        ),
        (
            f"Exponential-Euler step (k = 10), mean over {args.ee_steps} steps:",
            ["problem", "eigensolve", "grad. equiv. per step", "products", "after the first step"]
            + ["max relative residual of the k vectors", "final loss", "target"],
            step_rows,
        ),
    ]
    for intro, header, rows in tables:
        lines += md_table(intro, header, rows)
    md = "\n".join(lines) + "\n"
    (out / f"run-costs-{stamp}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
