"""Block power (subspace) iteration with QR and Rayleigh–Ritz (``docs/methods.md`` §6).

The method of Lowell (2024, §7.1): V ← orth(A V), eigenvalue estimates from the block,
stop when they no longer change; warm-started from the previous call's block it needs only
1–3 iterations along a training trajectory.
"""

from __future__ import annotations

import torch

from eoslab.eigen._ortho import (
    applied_tol,
    apply_rows,
    check_block_size,
    check_problem,
    check_verify_steps,
    generator,
    order,
    orthonormal_rows,
    residual_rows,
    start_rows,
    sym,
    threshold,
    wanted_key,
)
from eoslab.eigen._verify import find_missed
from eoslab.eigen.result import EigResult, make_result
from eoslab.linalg.base import Operator

__all__ = ["block_power"]

_CRITERIA = ("residual", "eigenvalue_change")


def block_power(
    op: Operator,
    k: int,
    *,
    which: str = "LA",
    v0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    seed: int = 0,
    block_size: int | None = None,
    shift: float | None = None,
    criterion: str = "residual",
    theta0: torch.Tensor | None = None,
    verify_steps: int = 8,
) -> EigResult:
    r"""k eigenpairs by block power iteration on A + σI with a Rayleigh–Ritz step.

    One iteration (Lowell 2024, §7.1, with the eigenvalue estimates taken from a
    Rayleigh–Ritz step on the block rather than from diag(R) of the QR factor; it costs no
    operator application and returns properly sorted pairs and their residuals):

        A V = (one block product, b vectors),
        Vᵀ A V = Y diag(θ) Yᵀ,   X = V Y,   A X = (A V) Y,        (Ritz pairs, residuals)
        V ← orth(s·A X + σ X)                                    (next block, b columns)

    with s = +1 (``'LA'``, ``'LM'``) or −1 (``'SA'``) and ``orth`` two CGS/SVQB passes
    (numerically dependent directions are replaced by seeded random ones). The block has
    b = ``block_size`` ≥ k columns; the extra guard columns make the convergence rate of
    pair i equal to |λ_{b+1} + σ| / |λ_i + σ| instead of |λ_{k+1} + σ| / |λ_i + σ|.

    Which eigenvalues it finds:

    - ``'LM'`` (the method's native target, σ = 0): the k largest |λ|, signs kept. This is
      Lowell's sharpness estimator; a negative λ_1 is reported as such (``docs/methods.md`` §6
      says EoS telemetry turns it into NaN).
    - ``'LA'``: the k largest λ, found as the dominant eigenvalues of A + σI. With
      ``shift=None`` σ is adapted: σ ← max(σ, −min_j θ_j) after every Rayleigh–Ritz step,
      starting from 0. Ritz values never lie below λ_min, so 0 ≤ σ ≤ −λ_min, and whenever a
      negative eigenvalue dominates the block σ grows until A + σI is nonnegative on it.
      The final σ is at most −λ_min, the smallest shift that makes A + σI positive
      semi-definite, so it is always correct but slow when |λ_min| ≫ λ_k − λ_{b+1}
      (rate (λ_{b+1} + σ)/(λ_k + σ)); prefer :func:`~eoslab.eigen.lobpcg` then. A fixed
      ``shift`` is used as given; it must satisfy σ > −(λ_k + λ_min)/2 for the top-k
      algebraic eigenvalues to be the dominant ones of A + σI (σ ≥ −λ_min always works).
    - ``'SA'``: the same on −A.

    Stopping rules (``criterion``):

    - ``'residual'`` (default): pair i converged when ‖A x_i − θ_i x_i‖ ≤
      tol · max(|θ_i|, ε_floor), ε_floor = 128 ε_mach max_j |θ_j| / tol (``docs/methods.md`` §6;
      Bauer–Fike bounds the eigenvalue error by tol·|θ_i|).
    - ``'eigenvalue_change'``: the paper's rule, per pair |θ_i(t) − θ_i(t−1)| ≤
      tol · max_{j≤k} |θ_j(t)|; all flags true is exactly the paper's max|ΔΛ| < tol·max|Λ|.
      It can stop early on slowly moving, unconverged estimates; residuals are reported
      either way so the caller can judge. With ``theta0`` (the previous call's eigenvalues
      along a trajectory, warm-started from its vectors) the first iteration is compared with
      them, so a solve can stop after one block product — the paper's reuse of the previous
      eigenpairs ("only 1–3 iterations"); without it at least two iterations are needed.

    Missed-eigenvalue check (``'residual'`` only): residuals cannot show that the block
    missed a wanted eigenvalue (a block started from an exactly invariant subspace, e.g. the
    eigenvectors 2…k+1, converges at once to λ_2…λ_{k+1}). Once the k pairs pass the test,
    ``verify_steps`` Lanczos steps on (I − XXᵀ) A (I − XXᵀ), X the k converged vectors,
    from a seeded random vector orthogonal to X (:func:`eoslab.eigen._verify.find_missed`)
    look for a Ritz value θ' better than θ_k by more than the k-th residual bound thr_k
    (θ' > θ_k + thr_k for ``'LA'``, θ' < θ_k − thr_k for ``'SA'``, |θ'| > |θ_k| + thr_k for
    ``'LM'``). If one appears its Ritz vector replaces the worst guard row of the next block
    and the iteration goes on, with another check at the next convergence; if ``max_iter``
    is spent by then, the pairs it beats are flagged as not converged. Cost: at most
    ``verify_steps`` single-vector products per check. Under ``'eigenvalue_change'`` the
    check does not run: that rule is the paper's deliberately unverified heuristic (its
    flags mean "the estimates stopped changing", not "verified eigenpairs"), and its point is
    a solve of one block product along a trajectory, which eight more products would more
    than double; use ``'residual'`` when the pairs must be verified.

    Warm start: when b > k at most b − 1 columns of ``v0`` are used, so the block always
    carries at least one seeded random guard direction.

    Zero operator: if the first block product A V_0 is exactly zero and V_0 holds a seeded
    random direction, A = 0 almost surely: eigenvalues 0, the start block, residuals 0, all
    converged, after those b products (under either rule).

    Tolerance floor (``'residual'``): a tol below 128 ε_mach of op's dtype is raised to it,
    with a :class:`~eoslab.eigen.result.ToleranceFloorWarning` once per process;
    ``EigResult.tol`` is the tolerance applied, ``requested_tol`` the one asked for. The
    ``'eigenvalue_change'`` rule applies tol as given.

    Args:
        op: symmetric operator on R^P (only ``op.matmat`` is called).
        k: number of eigenpairs, 1 ≤ k ≤ P.
        which: ``'LA'`` (default), ``'SA'`` or ``'LM'``.
        v0: start vectors [P] or [P, j] (e.g. a previous ``warm_start``); the first
            min(j, b) columns are used, the rest of the block is seeded noise.
        tol: tolerance of the stopping rule.
        max_iter: maximum number of iterations (block products).
        seed: seed of the random start vectors.
        block_size: b, k ≤ b ≤ P; default k + max(2, k // 4) (clipped to P).
        shift: fixed σ for ``'LA'``/``'SA'`` (None: adaptive, see above). Not allowed with
            ``'LM'``, where a shift would change which eigenvalues are found.
        criterion: ``'residual'`` or ``'eigenvalue_change'``.
        theta0: eigenvalue estimates [j] (descending by ``which``) that the first iteration's
            first min(j, k) Ritz values are compared with under ``'eigenvalue_change'``
            (ignored under ``'residual'``). Non-finite entries never count as converged.
        verify_steps: Lanczos steps of the missed-eigenvalue check (0 disables it; not run
            under ``'eigenvalue_change'``); default 8.

    Returns:
        :class:`~eoslab.eigen.result.EigResult` with ``method='block_power'``, ``n_iter``
        the number of block products and ``n_matvecs`` = b · n_iter plus the products of the
        missed-eigenvalue checks (≤ ``verify_steps`` each); the b − k guard Ritz vectors are
        kept for ``warm_start``.

    Raises:
        ValueError: for bad k, which, tol, max_iter, block_size, criterion, verify_steps,
            v0, or a shift given with ``'LM'``.
    """
    method = "block_power"
    k = check_problem(op, k, which=which, tol=tol, max_iter=max_iter, method=method)
    if criterion not in _CRITERIA:
        raise ValueError(f"{method}: criterion must be one of {_CRITERIA}, got {criterion!r}")
    if shift is not None and which == "LM":
        raise ValueError(f"{method}: shift is only meaningful for which='LA' or 'SA', not 'LM'")
    P, dtype = op.size, op.dtype
    b = check_block_size(block_size, k, P, method=method)
    verify_steps = check_verify_steps(verify_steps, method=method)
    requested_tol = tol
    if criterion == "residual":
        tol = applied_tol(tol, dtype, method=method)
    else:
        verify_steps = 0  # the heuristic rule stays unverified and cheap (see above)
    gen = generator(op, seed)
    s = -1.0 if which == "SA" else 1.0
    adaptive = shift is None and which != "LM"
    sigma = torch.zeros((), dtype=dtype, device=op.device) if shift is None else float(shift)

    Vt, n_rand = start_rows(op, b, v0, gen, method=method, guard=int(b > k))  # [b, P]
    theta_prev = None
    scale = torch.zeros((), dtype=dtype, device=op.device)  # running max |θ| (≤ ‖A‖)
    n_iter = 0
    n_matvecs = 0
    note = None
    while True:
        AVt = apply_rows(op, Vt)  # [b, P]
        n_iter += 1
        n_matvecs += b
        theta, Y = torch.linalg.eigh(sym(Vt @ AVt.mT))
        idx = order(theta, which)
        theta, Y = theta[idx], Y[:, idx]
        Xt, AXt = Y.mT @ Vt, Y.mT @ AVt  # Ritz vectors and their products, [b, P]
        rnorm = torch.linalg.vector_norm(residual_rows(AXt, Xt, theta), dim=1)
        scale = torch.maximum(scale, theta.abs().max())
        if criterion == "residual":
            thr = threshold(theta, scale, tol, dtype, op)
            conv = rnorm <= thr
        elif theta_prev is None:
            conv = torch.zeros(b, dtype=torch.bool, device=op.device)
            if theta0 is not None:  # first iteration: compare with the previous call's
                j = min(theta0.numel(), k)
                prev = theta0.reshape(-1)[:j].to(dtype=dtype, device=op.device)
                conv[:j] = (theta[:j] - prev).abs() <= tol * theta[:k].abs().max()
        else:
            conv = (theta - theta_prev).abs() <= tol * theta[:k].abs().max()
        if n_iter == 1 and n_rand:  # also ask whether A V_0 = 0: same host sync
            stop, zero = torch.stack([conv[:k].all(), rnorm.max() + scale == 0]).tolist()
            if zero:  # a random direction in V_0 and A V_0 = 0: A = 0 (see above)
                conv = torch.ones_like(conv)
                break
        else:
            stop = bool(conv[:k].all())  # the one host sync of the iteration
        inject = None
        if stop and verify_steps:
            found, n_used = find_missed(
                op,
                Xt[:k],
                key_ref=wanted_key(theta[k - 1], which) + thr[k - 1],
                which=which,
                steps=verify_steps,
                gen=gen,
                max_new=max(1, b - k),
            )
            n_matvecs += n_used
            if found is not None:
                if n_iter >= max_iter:  # no budget left: the pairs it beats are wrong
                    key = wanted_key(found.theta[0], which)
                    conv = conv & (wanted_key(theta, which) >= key)
                    note = "the missed-eigenvalue check found a better direction at max_iter"
                    break
                stop, inject = False, found.rows
        if stop or n_iter >= max_iter:
            break
        theta_prev = theta
        if adaptive:
            sigma = torch.maximum(sigma, -(s * theta).min())
        nxt = torch.add(sigma * Xt, AXt, alpha=s)
        if inject is not None:  # the found directions replace the worst guard rows
            nxt[b - inject.shape[0] :] = inject
        Vt = orthonormal_rows(nxt, b, gen=gen)

    return make_result(
        eigenvalues=theta[:k],
        eigenvectors=Xt[:k].T,
        residuals=rnorm[:k],
        converged=conv[:k],
        n_matvecs=n_matvecs,
        n_iter=n_iter,
        method=method,
        which=which,
        tol=tol,
        requested_tol=requested_tol,
        block=Xt.T,
        note=note,
    )
