"""Cost of the run loop's curvature work in gradient equivalents (issue "Training runs").

Two figures, each measured side by side with the gradient of the same problem in one process:

1. A full Lowell-2022 probe, cold and warm: top-k Hessian eigenpairs (k = 20), warm-started
   from the previous probe, the top/bulk gradient projections and the three real loss changes ΔL_top,
   ΔL_bulk, ΔL_full (``docs/methods.md`` §3). The trajectory is GD at η = 1.9/λ_1(θ_0) on
   digits-mlp (so it sharpens to the edge of stability; 1/λ_1 on mlp-eos, where 1.9/λ_1
   diverges); probes are 1/η steps apart, as in the paper. Each eigensolver of
   ``--probe-methods`` (default Lanczos and LOBPCG) probes the same θ, each warm-started from
   its own previous probe.
2. An exponential-Euler step (k = 10, ``docs/methods.md`` §7) averaged over a run of steps,
   each warm-started from the previous step's eigenvectors, with these eigensolves: the
   default (Lanczos, every pair verified to a relative residual of 1e-6), LOBPCG at the same
   residual, and Lowell 2024
   §7.1's procedure (block power iteration stopped when the eigenvalues changed by less than
   1e-3·max|Λ| from the previous step's, ``eig_method: block_power``,
   ``eig_criterion: eigenvalue_change``), with its largest relative residual reported so the
   price of not verifying is visible.

Two more measurements bound what any probe or step can cost, for the issue's targets:

3. Alongside every warm probe, a one-block probe: one block product of the previous verified
   probe's block (of the first eigensolver of ``--probe-methods``) and a Rayleigh–Ritz step (``method="block_power", max_iter=1``: 20 pairs +
   5 guard columns, nothing verified), with its largest relative residual and its largest
   eigenvalue error against the verified probe at the same θ (a best case: a run of such
   probes would start from its own unverified blocks).
4. The cost of one Hessian-vector product per vector, in blocks of 1, 10 and 20, by the
   library's algorithm (one backward pass over the cached graph of g per vector, ``docs/methods.md``
   §1) and by forward-over-reverse differentiation vectorised over the block
   (``torch.func.vmap`` of ``jvp(grad)``, which shares the primal passes across the block).

"Gradient equivalents" = seconds ÷ the fastest timing of one ``loss_and_gradient`` (best of 5
at each of many θ of the problem: every probe point, the start and end of each
exponential-Euler run; the cost of a gradient does not depend on θ, and one unit for all rows
keeps a timing slowed by the machine from distorting a single row). Results go to ``benchmarks/results/run-costs-*.{json,md}``.

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

from eoslab.dynamics import STEP_SOLVER, ExponentialEuler
from eoslab.eigen import SOLVERS, eigsh
from eoslab.linalg import HessianOperator
from eoslab.probes import DEFAULT_SOLVER, ProbeSuite
from eoslab.run import parse_config
from eoslab.run.build import build

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import best_time, clock, describe_device, select_device  # noqa: E402

#: Eigensolvers of the probes, compared side by side, unless --probe-methods says otherwise
#: (the first is the probes' default).
METHOD = "lanczos"
PROBE_METHODS = (METHOD, "lobpcg")

#: The exponential-Euler eigensolves compared: (result key, table label, solver options).
_PAPER = dict(method="block_power", criterion="eigenvalue_change")
EXP_EULER_VARIANTS = (
    ("exp_euler", "Lanczos, residual 1e-6 (default)", {}),
    ("exp_euler_lobpcg", "LOBPCG, residual 1e-6", dict(method="lobpcg")),
    (
        "exp_euler_paper",
        "block power, eigenvalue change 1e-3 (Lowell 2024 §7.1)",
        dict(_PAPER, tol=1e-3),
    ),
    ("exp_euler_loose", "block power, eigenvalue change 1e-2", dict(_PAPER, tol=1e-2)),
)


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


class GradTimer:
    """Gradient timings of one problem, sampled at many θ; :attr:`best` is the unit of cost.

    A gradient of a fixed network and data set costs the same at every θ, so every cost of a
    problem is divided by the fastest sample taken anywhere in its benchmark: one unit for all
    rows, which a sample slowed by the machine cannot inflate.
    """

    def __init__(self, problem):
        self.problem = problem
        self.samples: list[float] = []

    def sample(self, theta) -> None:
        """Add the best of 5 timed gradients at θ (after one untimed call)."""
        self.samples.append(best_time(lambda: self.problem.loss_and_gradient(theta), reps=5))

    @property
    def best(self) -> float:
        """The fastest sample: seconds of one gradient equivalent."""
        return min(self.samples)


def _probe_quietly(suite, problem, theta, *, lr, theta0, v0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return suite(problem, theta, lr=lr, threshold=2 / lr, theta0=theta0, v0=v0)


def bench_probe(problem, n_classes, timer, *, k, n_probes, warmup_steps, lr_factor, methods):
    """Seconds of cold and warm probes of each eigensolver in ``methods`` at the same θ.

    Every method keeps its own warm-start block. The order of the methods rotates from probe
    to probe, and an untimed one-block probe at the first θ takes the first-call costs, so
    no method is favoured by its place. The one-block probe starts from the first method's
    verified block.
    """
    theta0 = problem.initial_theta()
    lam1 = eigsh(HessianOperator(problem, theta0), 1).eigenvalues[0].item()
    lr = lr_factor / lam1
    every = max(1, round(1 / lr))
    theta = theta0
    for _ in range(warmup_steps):
        theta = theta - lr * problem.gradient(theta)
    suites = {
        m: ProbeSuite(k=k, n_classes=n_classes, solver=DEFAULT_SOLVER.replace(method=m))
        for m in methods
    }
    # the cheapest conceivable probe: one block and its Rayleigh–Ritz step, nothing verified
    one = DEFAULT_SOLVER.replace(method="block_power", max_iter=1, verify_steps=0)
    one_block = ProbeSuite(k=k, n_classes=n_classes, solver=one)
    _probe_quietly(one_block, problem, theta, lr=lr, theta0=theta0, v0=None)  # untimed
    rows = {m: [] for m in methods}
    v0 = dict.fromkeys(methods)
    blocks = []
    first = methods[0]
    for i in range(n_probes + 1):
        timer.sample(theta)
        verified = {}
        for m in methods[i % len(methods) :] + methods[: i % len(methods)]:
            t0 = clock()
            res = _probe_quietly(suites[m], problem, theta, lr=lr, theta0=theta0, v0=v0[m])
            rows[m].append(
                dict(
                    warm=i > 0,
                    seconds=clock() - t0,
                    n_matvecs=res.n_matvecs,
                    converged=bool(res.metrics["eig_converged"]),
                    lambda_1=res.metrics["lambda_1"],
                )
            )
            verified[m] = res
        if v0[first] is not None:  # a one-block warm probe, from the same start block
            t0 = clock()
            fast = _probe_quietly(one_block, problem, theta, lr=lr, theta0=theta0, v0=v0[first])
            seconds = clock() - t0
            lam = verified[first].eig.eigenvalues
            blocks.append(
                dict(
                    seconds=seconds,
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
    return dict(lr=lr, probe_every=every, k=k, rows=rows, blocks=blocks, first=first)


def probe_costs(raw: dict, tg: float) -> dict:
    """:func:`bench_probe`'s seconds in gradient equivalents (÷ ``tg``), summarised."""

    def summary(method_rows):
        for r in method_rows:
            r["grad_equiv"] = r["seconds"] / tg
        warm = [r for r in method_rows if r["warm"]]
        return dict(
            cold=method_rows[0],
            warm_mean_grad_equiv=float(np.mean([r["grad_equiv"] for r in warm])),
            warm_mean_matvecs=float(np.mean([r["n_matvecs"] for r in warm])),
            all_converged=all(r["converged"] for r in method_rows),
            warm=warm,
        )

    blocks = raw["blocks"]
    return dict(
        lr=raw["lr"],
        probe_every=raw["probe_every"],
        k=raw["k"],
        methods={m: summary(r) for m, r in raw["rows"].items()},
        one_block_method=raw["first"],
        one_block_mean_grad_equiv=float(np.mean([b["seconds"] for b in blocks]) / tg),
        one_block_matvecs=blocks[0]["n_matvecs"],
        one_block_max_rel_residual=float(max(b["max_rel_residual"] for b in blocks)),
        one_block_max_lambda_error=float(max(b["max_lambda_error"] for b in blocks)),
        blocks=blocks,
    )


def bench_products(problem, timer, blocks=(1, 10, 20), reps: int = 3):
    """Seconds per Hessian-vector product, by algorithm and block size (÷ ``tg`` later).

    ``graph``: the library's :class:`HessianOperator` (graph of g built once, not timed
    here; one backward pass per vector). ``forward_over_reverse``: ``vmap`` over the block
    of ``jvp(grad(L))`` at θ, one call per block (it recomputes g's graph each call, so its
    time includes that). Both give H V to round-off (checked).
    """
    from torch.func import grad, jvp, vmap

    theta = problem.initial_theta()
    timer.sample(theta)
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
                graph_seconds=best_time(lambda V=V: op.matmat(V), reps) / b,
                forward_over_reverse_seconds=best_time(lambda Vt=Vt: fwd_rev(Vt), reps) / b,
                max_rel_difference=err,
            )
        )
    return rows


def product_costs(rows: list[dict], tg: float) -> list[dict]:
    """:func:`bench_products`' seconds per vector in gradient equivalents (÷ ``tg``)."""
    for r in rows:
        r["graph"] = r["graph_seconds"] / tg
        r["forward_over_reverse"] = r["forward_over_reverse_seconds"] / tg
    return rows


def bench_exp_euler(problem, timer, *, k, steps, lr, **solver):
    """Seconds of ``steps`` exponential-Euler steps from θ_0 with the given eigensolve."""
    integ = ExponentialEuler(lr, k=k, solver=STEP_SOLVER.replace(**solver))
    theta = problem.initial_theta()
    state = integ.init_state(problem, theta)
    timer.sample(theta)
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
    timer.sample(theta)
    return dict(
        k=k,
        lr=lr,
        steps=steps,
        seconds=secs,
        mean_matvecs=float(np.mean(mvs)),
        max_rel_residual=float(np.max(rres)),
        final_loss=float(problem.loss(theta)),
    )


def exp_euler_costs(raw: dict, tg: float) -> dict:
    """:func:`bench_exp_euler`'s seconds in gradient equivalents (÷ ``tg``)."""
    secs = raw["seconds"]
    return dict(
        raw,
        first_step_grad_equiv=secs[0] / tg,
        mean_grad_equiv=float(np.mean(secs) / tg),
        mean_grad_equiv_after_first=float(np.mean(secs[1:]) / tg),
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
    ap.add_argument("--probes", type=int, default=5, help="warm probes measured (≥ 1)")
    ap.add_argument("--warmup-steps", type=int, default=200)
    ap.add_argument("--ee-steps", type=int, default=30, help="exponential-Euler steps (≥ 2)")
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
    if args.probes < 1:
        ap.error(f"--probes: at least 1 warm probe, got {args.probes}")
    if args.ee_steps < 2:
        ap.error(f"--ee-steps: at least 2 (the first step is reported apart), got {args.ee_steps}")
    methods = list(dict.fromkeys(m.strip() for m in args.probe_methods.split(",") if m.strip()))
    unknown = sorted(set(methods) - set(SOLVERS))
    if not methods:
        ap.error(f"--probe-methods: no eigensolver given; choose from {sorted(SOLVERS)}")
    if unknown:
        ap.error(f"--probe-methods: unknown {unknown}; choose from {sorted(SOLVERS)}")
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
        timer = GradTimer(problem)
        probe = bench_probe(
            problem,
            n_c,
            timer,
            k=20,
            n_probes=args.probes,
            warmup_steps=args.warmup_steps,
            lr_factor=lr_factor,
            methods=methods,
        )
        steps = {
            key: bench_exp_euler(problem, timer, k=10, steps=args.ee_steps, lr=1.0, **solver)
            for key, _, solver in EXP_EULER_VARIANTS
        }
        products = bench_products(problem, timer)
        tg = timer.best
        results[name] = dict(
            P=problem.size,
            N=problem.N,
            grad_s=tg,
            grad_s_samples=timer.samples,
            probe=probe_costs(probe, tg),
            **{key: exp_euler_costs(raw, tg) for key, raw in steps.items()},
            products=product_costs(products, tg),
        )
        print(json.dumps({name: results[name]}, default=float))
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
        "",
        "One gradient equivalent (the fastest gradient timing of each problem): "
        + ", ".join(f"{name} {r['grad_s']:.4f} s" for name, r in results.items())
        + ".",
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
        for key, label, _ in EXP_EULER_VARIANTS:
            e = r[key]
            step_rows.append(
                [name, label, f"{e['mean_grad_equiv']:.1f}", f"{e['mean_matvecs']:.1f}"]
                + [f"{e['mean_grad_equiv_after_first']:.1f}", f"{e['max_rel_residual']:.1e}"]
                + [f"{e['final_loss']:.6g}", "≤ 15"]
            )
    tables = [
        (
            f"Full probes (top-20 + projections + 3 ΔL): a cold one, then {args.probes} warm "
            f"one{'s' if args.probes > 1 else ''} 1/η steps apart (mean), every eigensolver at "
            "the same θ in rotating order; eigenpairs verified to a relative residual of 1e-4:",
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
