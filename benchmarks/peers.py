"""Peer libraries for the top-k Hessian eigenvalue benchmark: one adapter per peer.

The peers are used the way their own documentation shows, on the *full batch* (the whole data
set as one batch, the Hessian of the mean loss), so every peer computes the same matrix as
eoslab's ``HessianOperator``:

- ``curvlinops`` (PyPI ``curvlinops-for-pytorch``): ``HessianLinearOperator(...).to_scipy()``
  handed to ``scipy.sparse.linalg.eigsh`` (ARPACK implicitly restarted Lanczos).
- ``hessian-eigenthings`` (PyPI ``hessian-eigenthings``, the 1.0 alpha API):
  ``HessianOperator`` + ``lanczos`` (single pass, no restart).
- ``pyhessian`` (PyPI ``pyhessian``): ``hessian(model, criterion, data=(X, y)).eigenvalues``
  (power iteration with sequential deflation; largest magnitude only).

Each adapter counts Hessian-vector products by wrapping the peer's own product routine for the
duration of the call (restored afterwards), and times everything a user pays for: building the
peer's operator and the solve. ``settings="default"`` is what the peer's README/example does;
``settings="tuned"`` is the cheapest setting found that gives 1e-4 relative accuracy on all
top-k eigenvalues of the benchmark problems (see ``benchmarks/PEERS.md`` for the reasoning and
the measurements). Keyword ``overrides`` replace single solver options (used for sweeps).

Run ``python benchmarks/peers.py verify`` (tiny float64 MLP against a dense
``torch.func.hessian``) or ``python benchmarks/peers.py bench`` (timings on mlp-small).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from timing import clock  # benchmarks/timing.py: waits for the GPU before reading the time
from torch import nn

__all__ = [
    "PEERS",
    "available_peers",
    "peer_version",
    "loss_for",
    "run_peer",
    "MSEOneHot",
]

# peer name -> (import name, distribution name on PyPI)
_DISTRIBUTIONS = {
    "curvlinops": ("curvlinops", "curvlinops-for-pytorch"),
    "hessian-eigenthings": ("hessian_eigenthings", "hessian-eigenthings"),
    "pyhessian": ("pyhessian", "pyhessian"),
}


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------


class MSEOneHot(nn.Module):
    """eoslab's MSE criterion as a torch module: mean over samples of ½‖f − onehot(y)‖².

    Takes integer labels like ``nn.CrossEntropyLoss``. ``reduction = "mean"`` is declared because
    curvlinops reads it to weight batches (with one batch the weight is 1).
    """

    reduction = "mean"

    def forward(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over samples of ½‖f_n − onehot(y_n)‖²."""
        target = nn.functional.one_hot(y, f.shape[-1]).to(f.dtype)
        return 0.5 * (f - target).pow(2).sum(-1).mean()


class _AsCriterion(nn.Module):
    """Wrap a plain ``(outputs, y) -> mean loss`` callable as a module with ``reduction``."""

    reduction = "mean"

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The wrapped callable's value."""
        return self.fn(f, y)


def loss_for(name: str) -> nn.Module:
    """The torch criterion (mean reduction) matching eoslab's criterion ``name``."""
    key = name.lower().replace("-", "_")
    if key in ("cross_entropy", "ce"):
        return nn.CrossEntropyLoss()
    if key == "mse":
        return MSEOneHot()
    raise ValueError(f"unknown criterion {name!r}")


def _as_module(loss_fn) -> nn.Module:
    if isinstance(loss_fn, nn.Module) and getattr(loss_fn, "reduction", None) == "mean":
        return loss_fn
    if getattr(loss_fn, "reduction", "mean") != "mean":
        raise ValueError("peers need a mean-reduced loss (the Hessian of the mean loss)")
    return _AsCriterion(loss_fn)


# ----------------------------------------------------------------------------------------------
# counting and budget
# ----------------------------------------------------------------------------------------------


class OverBudget(RuntimeError):
    """Raised from inside a peer's product routine when the time budget is spent."""


class _Meter:
    """Counts operator applications and enforces an optional wall-clock budget."""

    def __init__(self, budget: float | None):
        self.n = 0
        self.budget = budget
        self.t0 = time.perf_counter()

    def add(self, n: int = 1) -> None:
        if self.budget is not None and time.perf_counter() - self.t0 > self.budget:
            raise OverBudget(f"time budget {self.budget:g} s spent after {self.n} products")
        self.n += n


_MISSING = object()


@contextlib.contextmanager
def _wrapped(owner: Any, attr: str, make: Callable[[Callable], Callable]) -> Iterator[None]:
    """Temporarily replace ``owner.attr`` by ``make(original)``; restore it exactly afterwards.

    Works for module functions, class attributes (inherited or own) and instance attributes.
    """
    own = vars(owner).get(attr, _MISSING) if hasattr(owner, "__dict__") else _MISSING
    original = getattr(owner, attr)
    setattr(owner, attr, make(original))
    try:
        yield
    finally:
        if own is _MISSING:
            delattr(owner, attr)
        else:
            setattr(owner, attr, own)


@contextlib.contextmanager
def _model_state(model: nn.Module) -> Iterator[None]:
    """Keep the caller's train/eval mode and ``.grad`` fields; start the peer with no grads."""
    training = model.training
    grads = [(p, p.grad) for p in model.parameters()]
    for p, _ in grads:
        p.grad = None
    try:
        yield
    finally:
        for p, g in grads:
            p.grad = g
        model.train(training)


def _start_vector(v0: torch.Tensor | None, P: int) -> np.ndarray | None:
    """One float64 start vector from a warm start given as [P] or a block [P, m] (column sum)."""
    if v0 is None:
        return None
    v = v0.detach().to("cpu", torch.float64)
    if v.ndim == 2:
        v = (v / v.norm(dim=0, keepdim=True).clamp_min(1e-300)).sum(dim=1)
    if v.shape != (P,):
        raise ValueError(f"v0 must have shape [{P}] or [{P}, m], got {tuple(v0.shape)}")
    return v.numpy()


def _descending(vals) -> np.ndarray:
    return np.sort(np.asarray(vals, dtype=np.float64).ravel())[::-1].copy()


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------


def _settings(name: str, settings: str, k: int, P: int) -> dict:
    """The solver options of ``name`` for ``settings``; reasons in benchmarks/PEERS.md."""
    if settings not in ("default", "tuned"):
        raise ValueError(f"settings must be 'default' or 'tuned', got {settings!r}")
    if name == "curvlinops":
        # README example: eigsh(H, k=k, which="LM"); ARPACK defaults tol=0 (machine precision),
        # ncv=max(2k+1, 20), maxiter=10 P.
        if settings == "default":
            return dict(which="LM", tol=0.0, ncv=None, maxiter=None)
        # which="LA": the benchmark wants the algebraically largest values and the Hessian has
        # negative eigenvalues larger in magnitude than λ_20 (mlp-small). ARPACK stops when
        # every Ritz residual is ≤ tol·|θ|, and a residual r bounds the eigenvalue error by
        # ‖r‖ (in practice ‖r‖²/gap), so tol=1e-4 guarantees the target with fewer products.
        return dict(which="LA", tol=1e-4, ncv=None, maxiter=None)
    if name == "hessian-eigenthings":
        # README: lanczos(H, k=5, seed=0) -> max_iter=min(2k, P-1), tol=1e-4 (only a flag),
        # which="LM", full reorthogonalisation while max_iter <= 50.
        if settings == "default":
            return dict(which="LM", max_iter=None, reorthogonalize=None, tol=1e-4, grow=False)
        # One Lanczos pass without restart: the Krylov dimension m must be large enough for
        # all k Ritz values to converge, and how large depends on the spectrum (m=35 gave
        # 6e-3 on the clustered tiny case, m=140 1e-10 on mlp-small k=20). So: full
        # reorthogonalisation, start at m = max(30, 7k) (enough for mlp-small k=1 and k=20)
        # and, while the library does not flag all k converged (Ritz residual < tol·|λ|,
        # which bounds the relative eigenvalue error by tol), run again from scratch with
        # 2m (the library cannot extend a run). All runs' products are counted.
        m = min(P - 1, max(30, 7 * k))
        return dict(which="LA", max_iter=m, reorthogonalize=True, tol=1e-4, grow=True)
    if name == "pyhessian":
        # hessian.eigenvalues() signature defaults: maxIter=100, tol=1e-3, top_n=1 (-> k).
        if settings == "default":
            return dict(maxIter=100, tol=1e-3)
        # the stopping test is on the change of the Rayleigh quotient between two steps,
        # which is (1-ρ²)× the remaining error for ratio ρ=|λ_{i+1}/λ_i|; deflation needs
        # accurate earlier vectors too. tol=1e-8 reaches PyHessian's floor (a 2e-6 relative
        # bias from the +1e-6 in its normalisation) on mlp-small top-1/top-5; the cap only
        # bounds pathological cases. Largest *magnitude* only: no setting fixes a top-k that
        # contains negative eigenvalues of larger magnitude than λ_k (mlp-small, k=20).
        return dict(maxIter=10000, tol=1e-8)
    raise KeyError(name)


# ----------------------------------------------------------------------------------------------
# peers
# ----------------------------------------------------------------------------------------------


def _run_curvlinops(model, loss_fn, X, y, k, opts, seed, v0, meter):
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    params = [p for p in model.parameters() if p.requires_grad]
    P = sum(p.numel() for p in params)
    start = _start_vector(v0, P)
    if start is None:  # ARPACK's own random start is not seedable; this one is
        start = np.random.default_rng(seed).standard_normal(P)

    def counting(orig):
        def _matmat(self, M):
            meter.add(int(M[0].shape[-1]))
            return orig(self, M)

        return _matmat

    notes = []
    with _wrapped(HessianLinearOperator, "_matmat", counting):
        H_op = HessianLinearOperator(model, _as_module(loss_fn), params, [(X, y)])
        n_setup = meter.n
        H = H_op.to_scipy()
        try:
            vals = eigsh(
                H,
                k=k,
                which=opts["which"],
                tol=opts["tol"],
                ncv=opts["ncv"],
                maxiter=opts["maxiter"],
                v0=start,
                return_eigenvectors=True,
            )[0]
        except ArpackNoConvergence as e:
            vals = e.eigenvalues
            notes.append(f"ARPACK not converged ({len(vals)}/{k} values)")
            vals = np.concatenate([vals, np.full(k - len(vals), np.nan)])
    notes.append(f"incl. {n_setup} products of curvlinops' check_deterministic")
    notes.append("which=LM (magnitude)" if opts["which"] == "LM" else f"which={opts['which']}")
    notes.append("warm start: v0 used" if v0 is not None else "seeded random v0")
    return vals, notes


def _run_eigenthings(model, loss_fn, X, y, k, opts, seed, v0, meter):
    import hessian_eigenthings as he

    op = he.HessianOperator(model, [(X, y)], he.supervised_loss(loss_fn))

    def counting(orig):
        def matvec(v):
            meter.add(1)
            return orig(v)

        return matvec

    notes = []
    m = opts["max_iter"]
    runs = []
    with _wrapped(op, "matvec", counting):
        while True:
            res = he.lanczos(
                op,
                k=k,
                max_iter=m,
                tol=opts["tol"],
                reorthogonalize=opts["reorthogonalize"],
                which=opts["which"],
                seed=seed,
            )
            runs.append(res.iterations)
            if not opts["grow"] or bool(res.converged.all()) or m is None or m >= op.size - 1:
                break
            m = min(op.size - 1, 2 * m)
    if len(runs) > 1:
        notes.append(f"Lanczos runs of {'+'.join(map(str, runs))} steps")
    n_conv = int(res.converged.sum())
    notes.append(f"{n_conv}/{k} flagged converged (Ritz residual < {opts['tol']:g}|λ|)")
    notes.append(f"which={opts['which']}" + (" (magnitude)" if opts["which"] == "LM" else ""))
    if v0 is not None:
        notes.append("v0 ignored: lanczos() takes no start vector")
    return res.eigenvalues.detach().cpu().numpy(), notes


def _run_pyhessian(model, loss_fn, X, y, k, opts, seed, v0, meter):
    # ``pyhessian.hessian`` the attribute is the class; the module is in sys.modules
    ph = importlib.import_module("pyhessian.hessian")

    def counting(orig):
        def hessian_vector_product(gradsH, params, v):
            meter.add(1)
            return orig(gradsH, params, v)

        return hessian_vector_product

    on_cuda = next(model.parameters()).is_cuda
    notes = ["largest magnitude only (power iteration + deflation)"]
    with (
        _wrapped(ph, "hessian_vector_product", counting),
        torch.random.fork_rng(devices=[torch.cuda.current_device()] if on_cuda else []),
    ):
        torch.manual_seed(seed)  # PyHessian draws its start vectors from the global RNG
        comp = ph.hessian(model, loss_fn, data=(X, y), cuda=on_cuda)
        vals, _ = comp.eigenvalues(maxIter=opts["maxIter"], tol=opts["tol"], top_n=k)
        del comp
    if v0 is not None:
        notes.append("v0 ignored: no start-vector argument")
    return np.asarray(vals, dtype=np.float64), notes


PEERS: dict[str, Callable] = {
    "curvlinops": _run_curvlinops,
    "hessian-eigenthings": _run_eigenthings,
    "pyhessian": _run_pyhessian,
}


def available_peers() -> list[str]:
    """The peers whose package imports in this environment."""
    out = []
    for name, (module, _) in _DISTRIBUTIONS.items():
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            continue
        out.append(name)
    return out


def peer_version(name: str) -> str:
    """Installed version of a peer's distribution."""
    return importlib.metadata.version(_DISTRIBUTIONS[name][1])


def run_peer(
    name: str,
    model: nn.Module,
    loss_fn,
    X: torch.Tensor,
    y: torch.Tensor,
    k: int,
    *,
    settings: str = "default",
    seed: int = 0,
    v0: torch.Tensor | None = None,
    time_budget: float | None = None,
    **overrides,
) -> dict:
    """Top-k Hessian eigenvalues of the full-batch mean loss at the model's parameters.

    Returns ``dict(eigenvalues=np.ndarray (descending), seconds, n_matvecs, notes, options)``.
    ``n_matvecs`` counts every Hessian-vector product the peer performed during the call
    (set-up checks included, see ``notes``). With ``time_budget`` (seconds) the solve is
    stopped at the first product past the budget and the eigenvalues are NaN.
    """
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
    P = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opts = _settings(name, settings, k, P)
    unknown = set(overrides) - set(opts)
    if unknown:
        raise TypeError(f"{name} has no option(s) {sorted(unknown)}; options: {sorted(opts)}")
    opts.update(overrides)
    dtype = next(model.parameters()).dtype
    if X.is_floating_point() and X.dtype != dtype:
        X = X.to(dtype)
    meter = _Meter(time_budget)
    with _model_state(model):
        t0 = clock()
        meter.t0 = t0
        try:
            vals, notes = PEERS[name](model, loss_fn, X, y, k, opts, seed, v0, meter)
        except OverBudget as e:
            vals, notes = np.full(k, np.nan), [f"stopped: {e}"]
        seconds = clock() - t0
    return dict(
        eigenvalues=_descending(vals),
        seconds=seconds,
        n_matvecs=meter.n,
        notes="; ".join(notes),
        options=dict(opts),
    )


# ----------------------------------------------------------------------------------------------
# verification and timing (python benchmarks/peers.py verify|bench)
# ----------------------------------------------------------------------------------------------


def _flat_loss(model: nn.Module, loss_fn, X, y):
    """θ ↦ loss for a flat θ laid out like ``model.parameters()``."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]

    def f(theta):
        parts = torch.split(theta, sizes)
        params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes)}
        return loss_fn(torch.func.functional_call(model, params, (X,)), y)

    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return f, theta


def dense_spectrum(model, loss_fn, X, y, chunk: int | None = None) -> np.ndarray:
    """All Hessian eigenvalues, descending, from a dense ``torch.func`` Hessian + ``eigvalsh``.

    ``chunk=None`` uses ``torch.func.hessian``; a chunk size builds the same matrix as
    ``jacrev(grad(f), chunk_size=chunk)`` to bound memory on larger models.
    """
    f, theta = _flat_loss(model, loss_fn, X, y)
    if chunk is None:
        H = torch.func.hessian(f)(theta)
    else:
        H = torch.func.jacrev(torch.func.grad(f), chunk_size=chunk)(theta)
    H = 0.5 * (H + H.T)
    return torch.linalg.eigvalsh(H).flip(0).cpu().numpy()


def rel_err(found, ref) -> float:
    """Largest relative error of the top-len(ref) values (inf when missing/NaN)."""
    found = np.asarray(found, dtype=np.float64)[: len(ref)]
    if len(found) < len(ref) or not np.all(np.isfinite(found)):
        return math.inf
    return float(np.max(np.abs(found - ref) / np.abs(ref)))


def tiny_problem(loss: str = "cross_entropy", n_out: int = 3, seed: int = 0):
    """MLP 8→16→n_out tanh, N=32 Gaussian inputs, random labels, float64."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, n_out)).double()
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(32, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_out, (32,), generator=g)
    return model, loss_for(loss), X, y


# (label, loss, n_out, seed); the last one has a clustered top of the spectrum: λ_1..λ_6 within
# 16 %, λ_3/λ_4 = 0.992, and |λ_min| = 0.86 λ_5 (so magnitude-only solvers are not disqualified)
TINY_CASES = [
    ("tiny 8→16→3 CE", "cross_entropy", 3, 0),
    ("tiny 8→16→3 MSE", "mse", 3, 0),
    ("tiny-clustered 8→16→10 CE", "cross_entropy", 10, 4),
]


def mlp_small():
    """mlp-small: MLP 64→3×64 tanh→10, N=512 Gaussian inputs, random labels, CE, float64."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(3):
        layers += [nn.Linear(64, 64), nn.Tanh()]
    layers.append(nn.Linear(64, 10))
    model = nn.Sequential(*layers).double()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(512, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (512,), generator=g)
    return model, nn.CrossEntropyLoss(), X, y


def _verify(args) -> int:
    _limit_threads(1)  # tiny problems: threads only add noise
    ok = True
    k = 5
    peers = available_peers()
    print(f"peers: {', '.join(f'{p} {peer_version(p)}' for p in peers)}")
    for label, loss, n_out, seed in TINY_CASES:
        model, loss_fn, X, y = tiny_problem(loss, n_out, seed)
        ref_all = dense_spectrum(model, loss_fn, X, y)
        ref = ref_all[:k]
        gaps = np.abs(np.diff(ref_all[: k + 1])) / np.abs(ref_all[:k])
        print(f"\n{label} (tanh, N=32, float64), P={ref_all.size}: top-{k} {ref}")
        print(
            f"  relative gaps λ_i−λ_(i+1): {np.array2string(gaps, precision=2)}; "
            f"λ_min={ref_all[-1]:.3g}"
        )
        print("  peer                settings  rel.err   matvecs  seconds  notes")
        for peer in peers:
            for settings in ("default", "tuned"):
                out = run_peer(peer, model, loss_fn, X, y, k, settings=settings, seed=args.seed)
                err = rel_err(out["eigenvalues"], ref)
                if settings == "tuned" and not err <= 1e-4:
                    ok = False
                print(
                    f"  {peer:19s} {settings:8s} {err:8.1e} {out['n_matvecs']:8d} "
                    f"{out['seconds']:8.3f}  {out['notes']}"
                )
    print("\nall tuned peers within 1e-4:", ok)
    return 0 if ok else 1


def _limit_threads(n: int) -> None:
    """Use ``n`` threads in torch *and* in NumPy/SciPy's BLAS (ARPACK runs on the latter).

    On a loaded machine an unrestricted OpenBLAS pool spins against other processes and
    inflates curvlinops' eigsh time (2.3 s of 6 s for mlp-small top-20 in one measurement).
    """
    torch.set_num_threads(n)
    try:
        import scipy.sparse.linalg  # noqa: F401 - load SciPy's own BLAS before limiting it
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _limit_threads.keep = threadpool_limits(limits=n)  # stays in force for the process


def _bench(args) -> int:
    if args.threads:
        _limit_threads(args.threads)
    model, loss_fn, X, y = mlp_small()
    P = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    ref_all = None
    if args.ref:
        try:
            ref_all = np.load(args.ref)
        except OSError:
            pass
    if ref_all is None:
        ref_all = dense_spectrum(model, loss_fn, X, y, chunk=256)
        if args.ref:
            np.save(args.ref, ref_all)
    print(
        f"mlp-small P={P}: dense reference {time.perf_counter() - t0:.1f} s; "
        f"top-3 {ref_all[:3]}, λ_20={ref_all[19]:.6g}, λ_21={ref_all[20]:.6g}, "
        f"λ_min={ref_all[-1]:.4g}"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.reps} "
        f"(one run when it takes > 60 s); seed {args.seed}"
    )
    peers = [p for p in available_peers() if not args.peers or p in args.peers.split(",")]
    for peer in peers:  # warm-up: first-call costs (lazy imports, functorch set-up)
        run_peer(peer, model, loss_fn, X, y, 1, settings="tuned", seed=args.seed)
    print("\n| peer | settings | k | seconds | matvecs | ms / matvec | max rel. error | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for k in [int(v) for v in args.k.split(",")]:
        ref = ref_all[:k]
        for peer in peers:
            for settings in ("default", "tuned"):
                best = None
                for _ in range(args.reps):
                    out = run_peer(
                        peer,
                        model,
                        loss_fn,
                        X,
                        y,
                        k,
                        settings=settings,
                        seed=args.seed,
                        time_budget=args.budget,
                    )
                    if best is None or out["seconds"] < best["seconds"]:
                        best = out
                    if out["seconds"] > 60:
                        break
                err = rel_err(best["eigenvalues"], ref)
                vals = best["eigenvalues"]
                notes = best["notes"]
                n_neg = int(np.sum(vals < 0))
                if n_neg:
                    notes += f"; returned {n_neg} negative value(s)"
                per = 1e3 * best["seconds"] / max(best["n_matvecs"], 1)
                print(
                    f"| {peer} | {settings} | {k} | {best['seconds']:.2f} | "
                    f"{best['n_matvecs']} | {per:.1f} | {err:.1e} | {notes} |",
                    flush=True,
                )
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="verify or time the peer eigensolvers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="tiny float64 MLPs against dense torch.func.hessian")
    v.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("bench", help="default vs tuned on mlp-small, top-1 and top-20")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--reps", type=int, default=1, help="best of this many runs")
    b.add_argument("--budget", type=float, default=600.0, help="seconds per peer solve")
    b.add_argument("--ref", default="", help="cache file (.npy) for the dense reference")
    b.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    b.add_argument("--peers", default="", help="comma-separated subset of the peers")
    b.add_argument("--k", default="1,20", help="comma-separated k values")
    args = ap.parse_args(argv)
    return _verify(args) if args.cmd == "verify" else _bench(args)


if __name__ == "__main__":
    sys.exit(main())
