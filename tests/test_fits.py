"""Fits and peaks (docs/methods.md §3 linear fit of peak λ_1 against N; §5 power law, Eq. 9)."""

import numpy as np
import pytest

from eoslab.fits import LinearFit, PowerLawFit, linear_fit, peak, power_law_fit

SIZES = np.array([468, 937, 1875, 3750, 7500])  # Lowell 2024 Dice sizes


def test_linear_fit_exact():
    x = np.array([390.0, 781, 1562, 3125, 6250])
    fit = linear_fit(x, 2.5e-3 * x + 41.0)
    assert isinstance(fit, LinearFit)
    assert fit.slope == pytest.approx(2.5e-3, rel=1e-12)
    assert fit.intercept == pytest.approx(41.0, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.n == 5
    assert fit.predict(1000.0) == pytest.approx(43.5, rel=1e-12)
    assert isinstance(fit.predict(1000.0), float)
    np.testing.assert_allclose(fit.predict(x), 2.5e-3 * x + 41.0, rtol=1e-12)


def test_linear_fit_two_points_and_lists():
    fit = linear_fit([1, 3], [2, -2])
    assert (fit.slope, fit.intercept, fit.r2, fit.n) == pytest.approx((-2.0, 4.0, 1.0, 2))


def test_linear_fit_matches_polyfit_with_noise():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 10, 200)
    y = 3.0 * x - 1.0 + rng.normal(scale=0.5, size=x.size)
    fit = linear_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)
    assert fit.slope == pytest.approx(3.0, abs=0.05)
    assert fit.intercept == pytest.approx(-1.0, abs=0.3)
    r2 = np.corrcoef(x, y)[0, 1] ** 2  # simple regression: R² = Pearson r²
    assert fit.r2 == pytest.approx(r2, rel=1e-10)
    assert 0.95 < fit.r2 < 1


def test_linear_fit_r2_of_pure_noise_is_small_and_constant_y_is_one():
    rng = np.random.default_rng(1)
    assert linear_fit(np.arange(500.0), rng.normal(size=500)).r2 < 0.02
    flat = linear_fit([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert (flat.slope, flat.intercept, flat.r2) == (0.0, 5.0, 1.0)


def test_power_law_exact():
    fit = power_law_fit(SIZES, 0.7 * SIZES**0.45)
    assert isinstance(fit, PowerLawFit)
    assert fit.a == pytest.approx(0.7, rel=1e-10)
    assert fit.b == pytest.approx(0.45, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.n == 5
    assert fit.predict(1000) == pytest.approx(0.7 * 1000**0.45, rel=1e-10)
    np.testing.assert_allclose(fit.predict(SIZES), 0.7 * SIZES**0.45, rtol=1e-10)


def test_power_law_negative_exponent_and_noise():
    rng = np.random.default_rng(2)
    N = np.geomspace(60, 960, 40)
    P = 12.0 * N**-0.3 * np.exp(rng.normal(scale=0.05, size=N.size))  # multiplicative noise
    fit = power_law_fit(N, P)
    assert fit.b == pytest.approx(-0.3, abs=0.05)
    assert fit.a == pytest.approx(12.0, rel=0.3)
    b, log_a = np.polyfit(np.log(N), np.log(P), 1)
    assert (fit.b, fit.a) == pytest.approx((b, np.exp(log_a)), rel=1e-10)
    assert 0.8 < fit.r2 < 1


def test_peak_skips_transient():
    steps = np.arange(30)
    values = np.linspace(0, 1, 30)
    values[2] = 100.0  # transient spike
    values[17] = 5.0
    assert peak(values, steps) == (5.0, 17)
    assert peak(values, steps, skip_transient=0) == (100.0, 2)
    assert isinstance(peak(values, steps)[1], int)


def test_peak_ties_nan_in_transient_and_float_steps():
    values = [np.nan, 1.0, 3.0, 3.0, 2.0]
    steps = [0, 10, 20, 30, 40]
    assert peak(values, steps) == (3.0, 20)  # earliest of a tie; NaN inside the transient ok
    t, s = peak([1.0, 4.0, 2.0], [0.5, 12.5, 20.0], skip_transient=10)
    assert (t, s) == (4.0, 12.5) and isinstance(s, float)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: linear_fit([1.0], [2.0]), "at least 2 points"),
        (lambda: linear_fit([1.0, 2.0], [1.0, 2.0, 3.0]), "same length"),
        (lambda: linear_fit([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]), r"x\[1\] is NaN"),
        (lambda: linear_fit([1.0, 2.0, 3.0], [1.0, 2.0, np.nan]), r"y\[2\] is NaN"),
        (lambda: linear_fit([1.0, 2.0, 3.0], [np.inf, 2.0, 3.0]), r"y\[0\] = inf"),
        (lambda: linear_fit([2.0, 2.0], [1.0, 3.0]), "all x are equal"),
        (lambda: linear_fit([[1.0, 2.0]], [[1.0, 2.0]]), "1-D"),
        (lambda: power_law_fit([10.0], [1.0]), "at least 2 points"),
        (lambda: power_law_fit([10.0, 20.0, 0.0], [1.0, 2.0, 3.0]), r"N\[2\] = 0"),
        (lambda: power_law_fit([10.0, 20.0], [-1.0, 2.0]), r"P\[0\] = -1"),
        (lambda: power_law_fit([10.0, 20.0], [1.0, np.nan]), r"P\[1\] is NaN"),
        (lambda: power_law_fit([10.0, 10.0], [1.0, 2.0]), "all N are equal"),
        (lambda: power_law_fit([10.0, 20.0], [1.0]), "same length"),
        (lambda: peak([1.0, 2.0], [1, 2, 3]), "same length"),
        (lambda: peak([1.0, 2.0], [1, 2]), "no step"),
        (lambda: peak([1.0, np.nan, 2.0], [10, 11, 12]), r"values\[1\] is NaN"),
        (lambda: peak([1.0, 2.0], [10, np.nan]), r"steps\[1\] is NaN"),
        (lambda: peak([1.0, 2.0], [10, 11], skip_transient=-1), "skip_transient"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fits_module_is_pure_numpy():
    import ast
    from pathlib import Path

    import eoslab.fits as fits

    tree = ast.parse(Path(fits.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "dataclasses", "numpy"}
