"""The ``eoslab`` command line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _demo(args: argparse.Namespace) -> int:
    """Top-20 Hessian eigenpairs of an MLP on the embedded digits data, at init and trained."""
    from eoslab.data import load_dataset
    from eoslab.eigen import eigsh
    from eoslab.linalg import HessianOperator
    from eoslab.models import build_model
    from eoslab.models.init import init_model
    from eoslab.plots import plot_spectrum
    from eoslab.problem import Problem

    ds = load_dataset("digits").flatten().standardize().to(dtype=torch.float64)
    model = build_model(
        "mlp", in_dim=64, n_out=10, depth=4, width=64, activation="tanh", dtype=torch.float64
    )
    init_model(model, "kaiming", seed=args.seed)
    problem = Problem(model, "mse", ds.X, ds.y)
    theta = problem.initial_theta()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k = args.k
    print(
        f"eoslab demo: MLP 64→3×64 tanh→10, MSE on {problem.N} digits, P = {problem.size:,}, "
        f"float64, top-{k} Hessian eigenpairs (Lanczos, tol 1e-4 on residuals)"
    )
    results, spectra, v0 = {}, {}, None
    lr = args.lr
    for label, steps in (("init", 0), (f"after {args.steps} GD steps", args.steps)):
        t_train = time.perf_counter()
        for _ in range(steps):
            theta = theta - lr * problem.gradient(theta)
        t_train = time.perf_counter() - t_train
        t0 = time.perf_counter()
        H = HessianOperator(problem, theta)
        res = eigsh(H, k, which="LA", v0=v0, seed=args.seed)
        seconds = time.perf_counter() - t0
        v0 = res.warm_start
        lam = res.eigenvalues.cpu().numpy()
        print(f"\n[{label}]  loss {problem.loss(theta).item():.4f}  (η = {lr}, 2/η = {2 / lr:.1f})")
        print(f"{'i':>3} {'λ_i':>12} {'ρ_i=ηλ/2':>10} {'residual':>10} conv")
        for i in range(k):
            print(
                f"{i + 1:>3} {lam[i]:>12.5f} {lr * lam[i] / 2:>10.4f} "
                f"{res.residuals[i].item():>10.2e} {'yes' if res.converged[i] else 'NO'}"
            )
        print(
            f"time {seconds:.2f} s for {res.n_matvecs} Hessian-vector products"
            + (f" (training {t_train:.1f} s)" if steps else "")
        )
        spectra[label] = lam
        results[label] = dict(
            eigenvalues=lam.tolist(),
            residuals=res.residuals.cpu().tolist(),
            converged=res.converged.cpu().tolist(),
            n_matvecs=res.n_matvecs,
            seconds=seconds,
            loss=problem.loss(theta).item(),
        )
    (out / "spectrum.json").write_text(json.dumps(dict(lr=lr, k=k, results=results), indent=1))
    files = plot_spectrum(spectra, out / "spectrum", threshold=2 / lr)
    print(f"\nwrote {out / 'spectrum.json'} and {', '.join(str(f) for f in files)}")
    return 0


def _parse_kw(items: list[str]) -> dict:
    """``["n_per_class=50", "split=test"]`` → {"n_per_class": 50, "split": "test"}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"eoslab: expected KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False, "none": None}.get(value.lower(), value)
    return out


def _data_show(args: argparse.Namespace) -> int:
    """Write a PNG grid of examples per class of a registered data set."""
    from eoslab.data import load_dataset
    from eoslab.data.show import show_examples

    kwargs = _parse_kw(args.kw)
    if args.name == "dice":
        kwargs.setdefault("n_per_class", 200)  # a grid needs few images; the full set is cached
    try:
        ds = load_dataset(args.name, **kwargs)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise SystemExit(f"eoslab data show: {err}") from None
    out = Path(args.out or f"{args.name}-examples.png")
    show_examples(ds, out, per_class=args.per_class, seed=args.seed)
    print(f"wrote {out} ({len(ds)} samples, classes: {', '.join(ds.classes)})")
    return 0


def _data_embed(args: argparse.Namespace) -> int:
    """Embed a sentiment corpus per token with a local encoder, using the embedding cache."""
    from eoslab.data.sst import embed_command

    try:
        report = embed_command(
            args.source,
            path=args.path,
            split=args.split,
            labels=args.labels,
            encoder=args.encoder,
            max_tokens=args.max_tokens,
            limit=args.limit,
            out=args.out,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            device=args.device,
            refresh=args.refresh,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise SystemExit(f"eoslab data embed: {err}") from None
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``eoslab`` command."""
    ap = argparse.ArgumentParser(prog="eoslab", description="Edge-of-stability curvature lab.")
    sub = ap.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="top Hessian eigenvalues on the embedded digits data")
    demo.add_argument("--out", default="runs/demo", help="output directory")
    demo.add_argument("--k", type=int, default=20, help="number of eigenpairs")
    demo.add_argument("--steps", type=int, default=300, help="GD steps before the second solve")
    demo.add_argument("--lr", type=float, default=0.05, help="GD learning rate η")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

    data = sub.add_parser("data", help="data-set tools").add_subparsers(dest="data_cmd")
    show = data.add_parser("show", help="PNG grid of examples per class")
    show.add_argument("name", help="registered data set, e.g. dice, digits, fashion_mnist")
    show.add_argument("--out", help="PNG path (default NAME-examples.png)")
    show.add_argument("--per-class", type=int, default=8)
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--kw", nargs="*", default=[], help="loader options as KEY=VALUE")
    show.set_defaults(func=_data_show)
    emb = data.add_parser("embed", help="per-token encoder embeddings of SST / GLUE / RT text")
    emb.add_argument("source", help="sst (PTB trees), glue (SST-2 TSV) or rt (VADER snippets)")
    emb.add_argument("--path", help="text file or folder (rt: sdist/txt; default search)")
    emb.add_argument("--split", help="train/dev/test when --path is a folder")
    emb.add_argument("--labels", default="binary", choices=["binary", "fine"])
    emb.add_argument("--encoder", default="minilm", help="minilm, roberta-base or a model dir")
    emb.add_argument("--max-tokens", type=int, default=32)
    emb.add_argument("--limit", type=int, help="embed only the first N texts")
    emb.add_argument("--out", help="also write X, y, texts to this .npz")
    emb.add_argument("--cache-dir", help="cache root (default $EOSLAB_CACHE or ~/.cache/eoslab)")
    emb.add_argument("--batch-size", type=int, default=64)
    emb.add_argument("--device", default="cpu")
    emb.add_argument("--refresh", action="store_true", help="recompute even if cached")
    emb.set_defaults(func=_data_embed)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eoslab`` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)
