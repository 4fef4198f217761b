"""Least-squares fits and peaks of telemetry across runs (``docs/methods.md`` §3 and §5).

- :func:`linear_fit`: y ≈ slope · x + intercept with its R² (Lowell 2022: peak λ_1 against the
  dataset size N, ``docs/methods.md`` §3, cusp-scan bullet).
- :func:`power_law_fit`: P(N) = a · N^b fitted in log–log space with the R² of that fit
  (Lowell 2024 Eq. 9 and Table 2: peak alignment against N, ``docs/methods.md`` §5).
- :func:`peak`: the largest value of a trajectory and its step, after the transient
  (``docs/methods.md`` §8: the first 10 steps are ignored).

Pure numpy on host arrays: this module imports nothing from eoslab and no torch, so the
analysis of stored results can use it without model code (``docs/architecture.md``: ``plots`` and
reports read the store only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LinearFit", "PowerLawFit", "linear_fit", "peak", "power_law_fit"]


@dataclass(frozen=True)
class LinearFit:
    """The least-squares line y ≈ slope · x + intercept.

    Attributes:
        slope: β̂ = Σ (x_i − x̄)(y_i − ȳ) / Σ (x_i − x̄)².
        intercept: α̂ = ȳ − β̂ x̄.
        r2: coefficient of determination R² = 1 − SS_res / SS_tot with
            SS_res = Σ (y_i − α̂ − β̂ x_i)², SS_tot = Σ (y_i − ȳ)²; **(choice)** R² = 1 when
            every y_i is equal (SS_tot = 0, fitted exactly by the flat line).
        n: number of points.
    """

    slope: float
    intercept: float
    r2: float
    n: int

    def predict(self, x) -> np.ndarray | float:
        """slope · x + intercept (a float for a scalar x, else an array of x's shape)."""
        out = self.slope * np.asarray(x, dtype=np.float64) + self.intercept
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class PowerLawFit:
    """The power law P ≈ a · N^b fitted as log P ≈ log a + b log N (Lowell 2024 Eq. 9).

    Attributes:
        a: prefactor, exp of the log–log intercept (> 0).
        b: exponent, the log–log slope.
        r2: R² of the linear fit in log–log space (the paper's Table 2 convention), not of
            the fit to P itself.
        n: number of points.
    """

    a: float
    b: float
    r2: float
    n: int

    def predict(self, N) -> np.ndarray | float:
        """a · N^b (a float for a scalar N, else an array of N's shape)."""
        out = self.a * np.asarray(N, dtype=np.float64) ** self.b
        return float(out) if out.ndim == 0 else out


def linear_fit(x, y) -> LinearFit:
    """Ordinary least squares y ≈ slope · x + intercept, with R² (``docs/methods.md`` §3).

    Used for peak λ_1 against the dataset size N (Lowell 2022). Computed from centred data,
    which keeps the normal equations well conditioned when x is large (N ~ 10⁴).

    Args:
        x: abscissae, 1-D array-like of n ≥ 2 finite numbers, not all equal.
        y: ordinates, 1-D array-like of the same length, finite.

    Returns:
        :class:`LinearFit`.

    Raises:
        ValueError: for inputs that are not 1-D or differ in length, fewer than 2 points, a
            NaN or infinite entry (naming the array and the index), or x all equal.
    """
    x = _as_1d("x", x)
    y = _as_1d("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"a linear fit needs at least 2 points, got {x.size}")
    _check_finite("x", x)
    _check_finite("y", y)
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        raise ValueError(f"all x are equal ({float(x[0])!r}): the slope is undetermined")
    dy = y - y.mean()
    slope = float(dx @ dy) / sxx
    intercept = float(y.mean() - slope * x.mean())
    resid = y - (slope * x + intercept)
    ss_res = float(resid @ resid)
    ss_tot = float(dy @ dy)
    r2 = 1.0 if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return LinearFit(slope=slope, intercept=intercept, r2=r2, n=int(x.size))


def power_law_fit(N, P) -> PowerLawFit:
    """P(N) = a · N^b by least squares in log–log space (Lowell 2024 Eq. 9, ``docs/methods.md`` §5).

    Fits log P = log a + b log N with :func:`linear_fit`; a = exp(intercept), b = slope,
    and R² is that of the log–log fit (Table 2). Noise-free data P = a N^b are recovered to
    round-off.

    Args:
        N: e.g. dataset sizes, 1-D array-like of n ≥ 2 positive finite numbers, not all equal.
        P: e.g. peak alignment per size, 1-D array-like of the same length, positive, finite.

    Returns:
        :class:`PowerLawFit`.

    Raises:
        ValueError: as :func:`linear_fit`, and for a non-positive entry of N or P (naming
            the array and the index), which has no logarithm.
    """
    N = _as_1d("N", N)
    P = _as_1d("P", P)
    if N.shape != P.shape:
        raise ValueError(f"N and P must have the same length, got {N.size} and {P.size}")
    if N.size < 2:
        raise ValueError(f"a power-law fit needs at least 2 points, got {N.size}")
    for name, v in (("N", N), ("P", P)):
        _check_finite(name, v)
        bad = np.flatnonzero(v <= 0)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"a power law needs positive values: {name}[{i}] = {float(v[i])!r} "
                f"({bad.size} non-positive entries)"
            )
    if np.all(N == N[0]):
        raise ValueError(f"all N are equal ({float(N[0])!r}): the exponent is undetermined")
    fit = linear_fit(np.log(N), np.log(P))
    return PowerLawFit(a=float(np.exp(fit.intercept)), b=fit.slope, r2=fit.r2, n=fit.n)


def peak(values, steps, skip_transient: int = 10) -> tuple[float, int | float]:
    """The largest value of a trajectory and the step where it occurs, after the transient.

    Peak λ_1 (Lowell 2022, ``docs/methods.md`` §3) and peak alignment (Lowell 2024, §5) are read
    this way; steps < ``skip_transient`` are ignored (``docs/methods.md`` §8: the first 10 steps).
    Ties go to the earliest step in the given order.

    Args:
        values: 1-D array-like of numbers; NaN is an error (a NaN sharpness, from a negative
            top eigenvalue, cannot be a peak silently ignored).
        steps: 1-D array-like of the same length, the step (or time) of each value.
        skip_transient: ignore entries whose step is below this, ≥ 0.

    Returns:
        (peak value, its step), as a float and the step's own Python type (int for integer
        steps).

    Raises:
        ValueError: for mismatched lengths, a negative ``skip_transient``, a NaN (naming its
            index) among the considered values or any step, or no step ≥ ``skip_transient``.
    """
    values = _as_1d("values", values)
    steps_arr = np.asarray(steps)
    if steps_arr.ndim != 1:
        raise ValueError(f"steps must be 1-D, got shape {steps_arr.shape}")
    if steps_arr.shape != values.shape:
        raise ValueError(
            f"values and steps must have the same length, got {values.size} and {steps_arr.size}"
        )
    if not np.issubdtype(steps_arr.dtype, np.number) or np.issubdtype(
        steps_arr.dtype, np.complexfloating
    ):
        raise ValueError(f"steps must be real numbers, got dtype {steps_arr.dtype}")
    if skip_transient < 0:
        raise ValueError(f"skip_transient must be ≥ 0, got {skip_transient}")
    _check_nan("steps", steps_arr.astype(np.float64))
    keep = np.flatnonzero(steps_arr >= skip_transient)
    if keep.size == 0:
        raise ValueError(
            f"no step ≥ skip_transient={skip_transient} among {values.size} entries "
            f"(last step {steps_arr[-1].item() if steps_arr.size else None!r})"
        )
    _check_nan("values", values, among=keep)
    i = int(keep[np.argmax(values[keep])])
    return float(values[i]), steps_arr[i].item()


def _as_1d(name: str, a) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_nan(name: str, a: np.ndarray, *, among: np.ndarray | None = None) -> None:
    idx = np.arange(a.size) if among is None else among
    bad = idx[np.isnan(a[idx])]
    if bad.size:
        raise ValueError(f"{name}[{int(bad[0])}] is NaN ({bad.size} NaN entries)")


def _check_finite(name: str, a: np.ndarray) -> None:
    _check_nan(name, a)
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}[{i}] = {float(a[i])!r} is not finite ({bad.size} infinite entries)"
        )
