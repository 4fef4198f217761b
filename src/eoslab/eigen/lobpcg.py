"""Matrix-free LOBPCG, the default eigensolver of eoslab (``docs/methods.md`` §6).

Locally optimal block preconditioned conjugate gradient (Knyazev 2001), without a
preconditioner, in the orthonormal-basis form of Duersch, Shao, Yang & Gu (2018, "A robust
and efficient implementation of LOBPCG", SIAM J. Sci. Comput. 40(5)). ``torch.lobpcg`` needs
an explicit dense or sparse matrix; this one only calls ``op.matmat``.
"""

from __future__ import annotations

import torch

from eoslab.eigen._ortho import (
    Run,
    applied_tol,
    check_block_size,
    check_problem,
    check_verify_steps,
    drop_tolerance,
    generator,
    ortho_limit,
    orthonormal_rows,
    start_rows,
    svqb_transform,
    sym,
    threshold,
)
from eoslab.eigen._verify import find_missed
from eoslab.eigen.result import EigResult
from eoslab.linalg.base import Operator

__all__ = ["lobpcg"]

#: Iterations between checks that the carried basis [X, D] is still orthonormal.
_ORTHO_CHECK_EVERY = 10


def lobpcg(
    op: Operator,
    k: int,
    *,
    which: str = "LA",
    v0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 500,
    seed: int = 0,
    block_size: int | None = None,
    verify_steps: int = 8,
) -> EigResult:
    r"""The k algebraically largest (or smallest) eigenpairs of a symmetric operator.

    Each iteration is one Rayleigh–Ritz step on the span of three orthonormal blocks
    (columns shown; stored as rows):

        S = [X, D, W],   Sᵀ A S = U diag(μ) Uᵀ,   X ← S U_{:, 1..m}   (μ descending),

    where X holds the m = k + guard current Ritz vectors, W the residuals
    R = A X − X diag(θ) of the wanted pairs that have not converged, and D the previous
    search directions (Knyazev's "P"). W is orthonormalised against [X, D] by block
    classical Gram–Schmidt with the Pythagorean Gram matrix and SVQB (Stathopoulos & Wu 2002),
    which drops numerically dependent directions instead of breaking down; a second pass
    runs only when cancellation makes it necessary. D is built in the small space
    (Hetmaniuk & Lehoucq 2006; Duersch et al. 2018, §3.2): span[X_new, D_new] =
    span[X_new, X_old] for the active pairs, with coefficients taken from the eigenvectors
    U_{:, m+1..n} of the projected matrix, so [X, D] is orthonormal to working precision
    however small the step, without touching a long vector.

    Choices that keep it fast at P in the millions (``docs/architecture.md`` rule 10):

    - **Guard vectors**: the block has m ≥ k columns and only the first k must converge;
      the convergence of pair k is governed by its gap to λ_{m+1} rather than λ_{k+1}.
    - **Soft locking**: converged pairs stay in X (the others remain orthogonal to them and
      they keep improving) but leave W; the guard pairs never enter W and improve through
      the Rayleigh–Ritz step alone (measured: 15–40% fewer products than iterating them, at
      the same iteration count). One iteration costs |W| ≤ k operator applications.
    - **Products by linear combination**: A X and A D are carried along by the same
      coefficients as X and D; A is never re-applied to them. The blocks of Sᵀ A S that
      involve only X and D are known from the previous Rayleigh–Ritz step (Xᵀ A X = diag θ,
      Xᵀ A D = 0, Dᵀ A D = Q_bᵀ diag(μ) Q_b), so only [X, D, W]ᵀ A W needs a long product.
    - **Few passes over the long vectors**: all long operations are matmuls on contiguous
      blocks of rows held in buffers allocated once: per iteration one or two
      orthonormalisation passes of two matmuls each ([W][X; D; W]ᵀ and the combination
      T' [X; D; W]), one Gram product [X; D; W] (A W)ᵀ, and the two updates
      [X; D] ← coefᵀ [X; D; W] and [AX; AD] ← coefᵀ [AX; AD; AW]; for k = 20 (m = 25) about
      2·10⁴ flops per long-vector entry per iteration, ~1000 per applied vector.
    - **Restart**: every 10 iterations the orthonormality of [X, D] is checked with one Gram
      product; if it has degraded beyond 1000 ε_mach · max(1, √P / 500) (the Gram entries
      themselves carry ~√P ε of round-off), X and A X are re-orthonormalised by the same
      transformation, a Rayleigh–Ritz step on X restores Xᵀ A X = diag(θ), and D is dropped.

    Convergence (``docs/methods.md`` §6): pair i has converged when
    ‖A x_i − θ_i x_i‖ ≤ tol · max(|θ_i|, ε_floor), ε_floor = 128 ε_mach max_j |μ_j| / tol
    (max over all Ritz values seen, a lower bound on ‖A‖); by Bauer–Fike some eigenvalue lies
    within tol·|θ_i| of θ_i. The residual is computed every iteration from the carried
    products A X, which equal a fresh product up to the round-off of the linear combinations.

    ``which='SA'`` runs the same iteration on −A. ``'LM'`` is not an extremum of the
    Rayleigh quotient; use :func:`~eoslab.eigen.lanczos` or
    :func:`~eoslab.eigen.block_power` for it.

    Warm start: pass the previous result's ``warm_start`` (its k eigenvectors and m − k
    guard vectors) as ``v0``. After a small change of the operator the start block is
    nearly invariant: the first Rayleigh–Ritz step costs m products and one or two
    iterations with a small W finish the job. When m > k at most m − 1 columns of ``v0``
    are used, so the block always carries at least one seeded random guard direction.

    Missed-eigenvalue check: residuals cannot show that the block missed a wanted
    eigenvalue (a start block that is exactly invariant, e.g. the eigenvectors 2…k+1,
    converges at once to λ_2…λ_{k+1}). Once the k pairs pass the test, ``verify_steps``
    Lanczos steps on (I − XXᵀ) A (I − XXᵀ), X the k converged vectors, from a seeded random
    vector orthogonal to X (:func:`eoslab.eigen._verify.find_missed`) look for a Ritz value
    θ' with θ' > θ_k + thr_k (for ``'SA'``: θ' < θ_k − thr_k), thr_k the k-th pair's residual
    bound. If one appears its Ritz vector replaces the worst guard vector (its product is
    known from the check), a Rayleigh–Ritz step on the new X follows, the search directions
    are dropped and the iteration goes on, with another check at the next convergence. Cost:
    at most ``verify_steps`` products per check. If the iteration budget is spent when a
    check finds a direction, the pairs it beats are flagged as not converged.

    Zero operator: if the first block of products A X_0 is exactly zero and X_0 holds a
    seeded random direction (always, unless ``v0`` fills a block with m = k), A = 0 almost
    surely: the result (eigenvalues 0, the start block, residuals 0, converged) is returned
    after those m products.

    Tolerance floor: a tol below 128 ε_mach of op's dtype is raised to it (it could not be
    applied anyway), with a :class:`~eoslab.eigen.result.ToleranceFloorWarning` once per
    process; ``EigResult.tol`` is the tolerance applied, ``requested_tol`` the one asked for.

    Args:
        op: symmetric operator on R^P (only ``op.matmat`` is called).
        k: number of eigenpairs, 1 ≤ k ≤ P.
        which: ``'LA'`` (largest algebraic, default) or ``'SA'`` (smallest algebraic).
        v0: start vectors [P] or [P, j]; the first min(j, m) columns are used, the rest of
            the block is seeded Gaussian noise.
        tol: relative residual tolerance (see above).
        max_iter: maximum number of iterations, each applying A to the active residuals.
        seed: seed of the random start vectors (the only randomness).
        block_size: m, k ≤ m ≤ P; default k + max(2, k // 4) (clipped to P), e.g. 25 for
            k = 20. A larger block converges in fewer iterations on clustered spectra at a
            higher cost per iteration.
        verify_steps: Lanczos steps of the missed-eigenvalue check (0 disables it); default
            8.

    Returns:
        :class:`~eoslab.eigen.result.EigResult` with ``method='lobpcg'``, ``n_iter`` the
        number of iterations (the initial Rayleigh–Ritz step on the start block and the
        checks are not counted; ``n_matvecs`` counts the checks' products), and the m − k
        guard vectors kept for ``warm_start``. Warns
        :class:`~eoslab.eigen.result.NonConvergenceWarning` if some pair did not converge.

    Raises:
        ValueError: for k outside 1..P, ``which`` not in {'LA', 'SA'}, tol ≤ 0,
            max_iter < 1, block_size outside k..P, verify_steps < 0, or a v0 without P rows.
    """
    method = "lobpcg"
    k = check_problem(
        op, k, which=which, tol=tol, max_iter=max_iter, method=method, allowed=("LA", "SA")
    )
    m = check_block_size(block_size, k, op.size, method=method)
    verify_steps = check_verify_steps(verify_steps, method=method)
    requested_tol, tol = tol, applied_tol(tol, op.dtype, method=method)
    gen = generator(op, seed)
    run = _lobpcg_solve(
        op,
        k,
        which=which,
        v0=v0,
        tol=tol,
        max_iter=max_iter,
        gen=gen,
        m=m,
        verify_steps=verify_steps,
        method=method,
    )
    return run.result(k, method=method, which=which, tol=tol, requested_tol=requested_tol)


def _lobpcg_solve(
    op: Operator,
    k: int,
    *,
    which: str,
    v0: torch.Tensor | None,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
    m: int,
    verify_steps: int,
    method: str,
) -> Run:
    """The iteration of :func:`lobpcg` on checked arguments (``tol`` as applied)."""
    P, dtype, device = op.size, op.dtype, op.device
    sign = 1.0 if which == "LA" else -1.0
    n_matvecs = 0

    def apply_into(dst: torch.Tensor, Vt: torch.Tensor) -> torch.Tensor:
        """dst ← rows of sign·A Vᵀ, [n, P]: one ``op.matmat`` and one copy, any layout."""
        nonlocal n_matvecs
        n_matvecs += Vt.shape[0]
        dst.copy_(op.matmat(Vt.T).T)
        return dst if sign > 0 else dst.neg_()

    def apply(Vt: torch.Tensor) -> torch.Tensor:
        return apply_into(torch.empty_like(Vt), Vt)

    # Long-vector storage, allocated once. S holds the orthonormal basis rows
    # [X (m) | D (n_p ≤ k) | W (n_w ≤ k)] and AS their products, so that every long product
    # is one matmul over contiguous rows; the next X and D are written into the twins
    # S_next, AS_next, so nothing is copied back.
    def rows(n: int) -> torch.Tensor:
        return torch.empty(n, P, dtype=dtype, device=device)

    S, S_next, AS, AS_next = (rows(m + 2 * k) for _ in range(4))
    R, W_out = rows(m), rows(k)  # residuals; scratch for the orthonormalised W

    X0, n_rand = start_rows(op, m, v0, gen, method=method, guard=int(m > k))  # [m, P]
    AX0 = apply_into(AS_next[:m], X0)
    theta, C = _ritz(X0, AX0)
    torch.mm(C.mT, X0, out=S[:m])
    torch.mm(C.mT, AX0, out=AS[:m])
    del X0, AX0
    scale = theta.abs().max()  # running max of |Ritz values|, a lower bound on ‖A‖
    GP = None  # Dᵀ A D, [n_p, n_p], known from the small space
    n_p = 0
    n_iter = 0
    n_checks = 0
    note = None
    while True:
        nq = m + n_p
        torch.addcmul(AS[:m], S[:m], theta[:, None], value=-1, out=R)  # R = AX − X diag(θ)
        rnorm = torch.linalg.vector_norm(R, dim=1)  # [m]
        thr = threshold(theta, scale, tol, dtype, op)
        conv = rnorm <= thr
        conv_host = conv.cpu()  # the host sync of the iteration
        if bool(conv_host[:k].all()):
            if n_iter == 0 and n_checks == 0 and n_rand and bool(rnorm.max() + scale == 0):
                break  # A X_0 = 0 with a random direction in X_0: A = 0 (see above)
            if verify_steps == 0:
                break
            # missed-eigenvalue check; in terms of sign·A the wanted key is θ itself
            found, n_used = find_missed(
                op,
                S[:k],
                key_ref=theta[k - 1] + thr[k - 1],
                which=which,
                steps=verify_steps,
                gen=gen,
                max_new=max(1, m - k),
            )
            n_matvecs += n_used
            if found is None:
                break
            n_checks += 1
            if n_iter >= max_iter or n_checks > max_iter:
                # no budget left to converge the new direction: the pairs it beats are wrong
                conv = conv & (theta >= sign * found.theta[0])
                note = "the missed-eigenvalue check found a better direction with no budget left"
                break
            q = found.rows.shape[0]  # replaces the worst guard vectors, then Rayleigh–Ritz
            S[m - q : m] = found.rows
            AS[m - q : m] = found.products if sign > 0 else -found.products
            theta = _restart(S, AS, m, apply, gen)
            scale = torch.maximum(scale, theta.abs().max())
            GP, n_p = None, 0
            continue
        if n_iter >= max_iter:
            break
        # soft locking: residual directions only for the unconverged wanted pairs; the guard
        # pairs improve through the Rayleigh–Ritz step without products of their own
        active = (~conv_host[:k]).nonzero().flatten().to(device)
        na = active.numel()
        torch.index_select(R, 0, active, out=S[nq : nq + na])
        nw = _orthonormalize_against(S, nq, na, W_out)  # W = S[nq : nq + nw]
        if nw == 0:
            note = "stopped: the residuals lie in span[X, D] to round-off"
            break
        n = nq + nw
        apply_into(AS[nq:n], S[nq:n])  # A W, [n_w, P]
        n_iter += 1

        # Rayleigh–Ritz on the orthonormal rows S[:n]; G = S A Sᵀ with the [X, D] blocks
        # known from the previous step (XᵀAX = diag θ, XᵀAD = 0, DᵀAD = GP)
        G = torch.zeros(n, n, dtype=dtype, device=device)
        G[:m, :m] = torch.diag(theta)
        if n_p:
            G[m:nq, m:nq] = GP
        G[:, nq:] = S[:n] @ AS[nq:n].mT  # the one long Gram product, [n, n_w]
        G = torch.triu(G) + torch.triu(G, 1).mT
        mu, U = torch.linalg.eigh(G)
        scale = torch.maximum(scale, mu.abs().max())
        theta = mu[-m:].flip(0)  # descending
        C = U[:, -m:].flip(1)  # [n, m] coefficients of the new X

        # next directions D = S Z with span[X_new, D] = span[X_new, X_old] for the active
        # pairs (Hetmaniuk & Lehoucq 2006): Z spans the old X coordinates e_i, i active,
        # projected off C. Built from the remaining eigenvectors U_r of G, it is orthogonal
        # to C to working precision however small the step (Duersch et al. 2018, §3.2).
        Ur = U[:, : n - m]  # [n, n − m]
        B = Ur[active].mT  # [n − m, n_a] = U_rᵀ e_active
        for _ in range(2):  # SVQB twice: B is ill-conditioned when the step is small
            B = B @ svqb_transform(B.mT @ B, tau=drop_tolerance(dtype, n)).mT
        Qb = B  # [n − m, n_p], orthonormal columns
        Z = Ur @ Qb  # [n, n_p]
        GPn = sym(Qb.mT @ (mu[: n - m, None] * Qb))  # Zᵀ G Z = Q_bᵀ diag(μ_r) Q_b
        n_p = Z.shape[1]
        coef = torch.cat([C, Z], dim=1)  # [n, m + n_p]
        torch.mm(coef.mT, S[:n], out=S_next[: m + n_p])  # [X; D] ← coefᵀ [X; D; W]
        torch.mm(coef.mT, AS[:n], out=AS_next[: m + n_p])  # [AX; AD] ← coefᵀ [AX; AD; AW]
        GP = GPn if n_p else None
        S, S_next, AS, AS_next = S_next, S, AS_next, AS

        if n_iter % _ORTHO_CHECK_EVERY == 0:
            q = m + n_p
            eye = torch.eye(q, dtype=dtype, device=device)
            if float((S[:q] @ S[:q].mT - eye).abs().max()) > ortho_limit(dtype, P):
                theta = _restart(S, AS, m, apply, gen)
                GP, n_p = None, 0

    return Run(
        theta=theta[:k] * sign,
        Xt=S[:m].clone(),  # [m, P]; frees the solver's buffers
        rnorm=rnorm[:k],
        conv=conv[:k],
        n_matvecs=n_matvecs,
        n_iter=n_iter,
        note=note,
    )


def _ritz(Xt: torch.Tensor, AXt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rayleigh–Ritz on orthonormal rows: θ descending and coefficients C with X ← Cᵀ X."""
    theta, C = torch.linalg.eigh(sym(Xt @ AXt.mT))
    return theta.flip(0), C.flip(1)


def _restart(S, AS, m: int, apply, gen) -> torch.Tensor:
    """Re-orthonormalise X = S[:m] (and AX = AS[:m] alike) and redo Rayleigh–Ritz on it.

    Used when round-off has degraded the orthonormality of [X, D]; D is dropped by the
    caller. SVQB's transform T is applied to the carried products (T A X = A T X), so no
    operator application is needed unless X has lost rank, in which case it is refilled
    with seeded random directions and A is applied to the new block.
    """
    X, AX = S[:m], AS[:m]
    T = svqb_transform(X @ X.mT, tau=drop_tolerance(X.dtype, m))
    if T.shape[0] == m:
        Xn, AXn = T @ X, T @ AX
    else:
        Xn = orthonormal_rows(T @ X, m, gen=gen)
        AXn = apply(Xn)
    theta, C = _ritz(Xn, AXn)
    torch.mm(C.mT, Xn, out=X)
    torch.mm(C.mT, AXn, out=AX)
    return theta


def _orthonormalize_against(S: torch.Tensor, nq: int, na: int, W_out: torch.Tensor) -> int:
    """Orthonormalise the rows W = S[nq : nq + na] against Q = S[:nq] in place; return n_w.

    Block classical Gram–Schmidt with the Pythagorean Gram matrix and SVQB, done as two
    long matmuls per pass over the contiguous rows [Q; W]:

        G = W [Q; W]ᵀ = [W Qᵀ, W Wᵀ],   G' = W Wᵀ − (W Qᵀ)(W Qᵀ)ᵀ   (Gram of W − (W Qᵀ) Q),
        W ← T (W − (W Qᵀ) Q) = [−T W Qᵀ, T] [Q; W],

    with T from SVQB of G' (Stathopoulos & Wu 2002; dependent directions dropped). Rows
    that lose all but 100 ε of their norm to the projection are dropped first. A second
    pass ("twice is enough") runs when some row lost more than half its squared norm to
    the projection (then G' carries cancellation error) or G' scaled to unit diagonal has
    an eigenvalue below 0.1 (then one SVQB step leaves more than ~10 ε of
    non-orthogonality); otherwise one pass is accurate to working precision.
    """
    dtype = S.dtype
    eps = torch.finfo(dtype).eps
    tau = drop_tolerance(dtype, nq + na)
    for _ in range(2):
        W = S[nq : nq + na]
        G = W @ S[: nq + na].mT  # [n_a, nq + n_a]
        Cq = G[:, :nq]
        Gw = sym(G[:, nq:])
        Gp = Gw - Cq @ Cq.mT
        d0, d1 = torch.diagonal(Gw), torch.diagonal(Gp)
        ratio = d1 / d0.clamp_min(torch.finfo(dtype).tiny)
        live = ratio > 100 * eps
        dscale = torch.where(live, d1.clamp_min(torch.finfo(dtype).tiny).rsqrt(), 0)
        e, U = torch.linalg.eigh(sym(Gp * dscale[:, None] * dscale[None, :]))
        keep = e > tau * e.max().clamp_min(0)
        inf = torch.tensor(float("inf"), dtype=dtype, device=S.device)
        stats = torch.stack(
            [
                keep.sum().to(dtype),
                torch.where(live, ratio, inf).min(),
                torch.where(keep, e, inf).min(),
            ]
        ).tolist()  # one host sync per pass
        nw = int(stats[0])
        if nw == 0:
            return 0
        T = (U[:, -nw:] * dscale[:, None] / e[-nw:].sqrt()).mT  # [n_w, n_a]
        M = torch.cat([-(T @ Cq), T], dim=1)  # [n_w, nq + n_a]
        torch.mm(M, S[: nq + na], out=W_out[:nw])
        S[nq : nq + nw].copy_(W_out[:nw])
        na = nw
        if stats[1] >= 0.5 and stats[2] >= 0.1:
            break
    return na
