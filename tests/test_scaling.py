"""Scaling-law fits: parameter recovery inside the bootstrap interval, the 4,500-start grid, ARE, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import scaling


def test_power_law_recovery_lies_inside_the_bootstrap_interval():
    rng = np.random.default_rng(0)
    x = np.repeat(np.geomspace(16, 8192, 10), 3)
    truth = {"E": 0.3, "A": 2.0, "alpha": 0.5}
    y = (truth["E"] + truth["A"] * x ** -truth["alpha"]) * np.exp(0.01 * rng.standard_normal(len(x)))
    f = scaling.fit("power", {"x": x}, y)
    ci = f.bootstrap(40, jax.random.key(0), level=0.99)
    for k, v in truth.items():
        lo, hi = ci[k]
        assert lo <= v <= hi, (k, v, lo, hi)
        assert hi - lo < 0.25 * v  # and the interval is informative
        assert abs(f.params[k] - v) < 0.1 * v
    # raw samples predict one curve per bootstrap refit, and they are the reported samples' curves
    curves = f.predict({"x": [16.0, 8192.0]}, raw=ci["raw_samples"])
    s = ci["samples"]
    assert curves.shape == (40, 2)
    np.testing.assert_allclose(curves[:, 1], s["E"] + s["A"] * 8192.0 ** -s["alpha"], rtol=1e-9)
    assert f.are({"x": [8192.0]}, [float(f.predict({"x": [8192.0]})[0])]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="raw must have the keys"):
        f.predict({"x": [1.0]}, raw={"e": [0.0]})


def test_chinchilla_recovery_and_extrapolation_error():
    rng = np.random.default_rng(1)
    n = np.geomspace(1e7, 1e10, 16)
    N, D = np.meshgrid(n, np.geomspace(1e9, 1e12, 16))
    N, D = N.ravel(), D.ravel()
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
    law = lambda N, D: truth["E"] + truth["A"] / N ** truth["alpha"] + truth["B"] / D ** truth["beta"]
    y = law(N, D) * np.exp(0.003 * rng.standard_normal(len(N)))
    assert len(scaling._grid(scaling.CHINCHILLA.grid)["e"]) == 4500  # the default grid (Besiroglu et al.)
    big = N == N.max()  # hold out the largest model, as in Choshen et al.
    f = scaling.fit("chinchilla", {"N": N[~big], "D": D[~big]}, y[~big])
    for k in ("E", "alpha", "beta"):
        assert abs(f.params[k] - truth[k]) < 0.1 * truth[k], (k, f.params)
    assert f.are({"N": N[big], "D": D[big]}, y[big]) < 0.01
    np.testing.assert_allclose(f.predict({"N": N[big], "D": D[big]}), law(N[big], D[big]), rtol=0.01)


def test_screening_keeps_the_best_start():
    rng = np.random.default_rng(3)
    x = np.geomspace(10, 1e4, 25)
    y = (0.5 + 3.0 * x ** -0.7) * np.exp(0.02 * rng.standard_normal(25))
    a, b = scaling.fit("power", {"x": x}, y), scaling.fit("power", {"x": x}, y, screen=None)
    assert a.objective == pytest.approx(b.objective, rel=1e-6)


def test_a_user_law_function():
    x = np.geomspace(1, 100, 20)
    y = 2.0 * x ** 0.3
    f = scaling.fit(lambda p, d: p["c"] + p["k"] * jnp.log(d["x"]), {"x": x}, y, starts={"c": [0.0, 1.0], "k": [0.0]})
    assert f.params["c"] == pytest.approx(np.log(2.0), abs=1e-4) and f.params["k"] == pytest.approx(0.3, abs=1e-4)


def test_errors_name_the_argument():
    x = np.geomspace(1, 100, 5)
    with pytest.raises(ValueError, match="valid names: chinchilla, power"):
        scaling.fit("powr", {"x": x}, x)
    with pytest.raises(ValueError, match="column 'x'"):
        scaling.fit("power", {"n": x}, x)
    with pytest.raises(ValueError, match=r"target must be > 0 \(the laws are fitted in log space\); 5 value"):
        scaling.fit("power", {"x": x}, -x)
    with pytest.raises(ValueError, match=r"target must be finite; 1 value\(s\) are not \(first at index 2"):
        scaling.fit("power", {"x": x}, np.where(np.arange(5) == 2, np.nan, x))
    with pytest.raises(ValueError, match=r"target must be 1-D \[n\], got shape \[5, 1\]"):
        scaling.fit("power", {"x": x}, x[:, None])
    with pytest.raises(ValueError, match="target needs at least 2 values, got 1"):
        scaling.fit("power", {"x": x[:1]}, x[:1])
    with pytest.raises(ValueError, match="needs starts"):
        scaling.fit(lambda p, d: d["x"], {"x": x}, x)
    with pytest.raises(ValueError, match=r"unknown start parameter\(s\) \['gamma'\]"):
        scaling.fit("power", {"x": x}, x, starts={"gamma": [1.0]})


def test_unidentifiable_data_is_refused():
    """Fewer distinct points than parameters, or a constant variable, cannot determine a law."""
    with pytest.raises(ValueError, match=r"2 distinct data point\(s\) for a law with 3 parameters"):
        scaling.fit("power", {"x": [16.0, 32.0, 16.0, 32.0]}, [0.5, 0.4, 0.51, 0.41])
    with pytest.raises(ValueError, match=r"data\['x'\] takes a single value \(64\)"):
        scaling.fit("power", {"x": [64.0] * 6}, np.linspace(0.3, 0.5, 6))
    N = np.geomspace(1e6, 1e9, 8)
    with pytest.raises(ValueError, match=r"data\['D'\] takes a single value"):
        scaling.fit("chinchilla", {"N": N, "D": np.full(8, 1e10)}, 2.0 + 1.0 / N ** 0.3)
    # three distinct x (repeated seeds) are enough for three parameters
    f = scaling.fit("power", {"x": [16.0, 16.0, 64.0, 64.0, 256.0, 256.0]}, [0.6, 0.61, 0.45, 0.44, 0.37, 0.38])
    assert np.isfinite(f.objective)
