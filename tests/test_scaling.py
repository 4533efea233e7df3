"""Scaling-law fits: parameter recovery inside the bootstrap interval, the 4,500-start grid, ARE, errors."""

import dataclasses
import json
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import analysis, scaling

# runtime-bound float64 L-BFGS: compiled with every XLA optimisation (about 30% faster here)
pytestmark = pytest.mark.optimized


@pytest.mark.slow
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
    # the batched refits equal refitting each resample on its own: a batch of 40 copies of resample i
    # (the same compiled solve) gives the mixed batch's refit i, so no refit depends on the others; the
    # bootstrap draws its resamples from the key with resample_counts (in strata: each keeps its size)
    counts = scaling.resample_counts(40, jax.random.key(0), np.zeros(len(x)))
    assert counts.shape == (40, 30) and (counts.sum(1) == 30).all()
    for i in (0, 17):
        alone = f.refits(np.repeat(counts[i:i + 1], 40, axis=0))
        for k, v in alone.items():
            np.testing.assert_allclose(v, ci["raw_samples"][k][i], rtol=1e-10)
    strata = np.repeat(np.arange(10), 3)
    by_x = scaling.resample_counts(5, jax.random.key(3), strata)
    np.testing.assert_array_equal(by_x.reshape(5, 10, 3).sum(2), 3)
    with pytest.raises(ValueError, match="counts must be"):
        f.refits(counts[:, :5])


def test_chinchilla_recovery_and_extrapolation_error():
    rng = np.random.default_rng(1)
    n = np.geomspace(1e7, 1e10, 8)  # 8 x 8 runs recover every exponent within ~1% (16 x 16: 4x the time)
    N, D = np.meshgrid(n, np.geomspace(1e9, 1e12, 8))
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


@pytest.mark.slow
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


# ----------------------------------------------------------------------------- the three approaches


def _brute_frontier(x, y):
    return np.array([all(y[i] < y[j] for j in range(len(x)) if x[j] < x[i]) for i in range(len(x))])


def test_frontier_pareto_and_bins_against_brute_force():
    rng = np.random.default_rng(0)
    x = np.round(np.exp(rng.uniform(0, 8, 60)), 1)
    x[5] = x[6]  # a tie in x
    y = 1.0 / np.log(x + 2) + 0.05 * rng.standard_normal(60)
    np.testing.assert_array_equal(scaling.frontier(x, y), _brute_frontier(x, y))
    assert scaling.frontier(x, y)[np.argmin(x)]
    mask = scaling.frontier(x, y, bins=6)
    edges = np.linspace(np.log(x).min(), np.log(x).max(), 7)
    for b in range(6):
        inside = (np.log(x) >= edges[b]) & ((np.log(x) < edges[b + 1]) if b < 5 else True)
        if inside.any():
            assert mask[inside].sum() == 1 and y[mask & inside][0] == y[inside].min()
    assert mask.sum() <= 6
    with pytest.raises(ValueError, match="bins must be None or an integer >= 1"):
        scaling.frontier(x, y, bins=0)
    with pytest.raises(ValueError, match="x must be finite and > 0"):
        scaling.frontier(-x, y)


def test_pure_power_with_log_least_squares_is_the_log_log_regression():
    rng = np.random.default_rng(1)
    x = np.geomspace(1e6, 1e10, 12)
    y = 30.0 * x ** -0.12 * np.exp(0.02 * rng.standard_normal(12))
    f = scaling.fit("pure_power", {"x": x}, y, loss="mse_log")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    assert f.params["alpha"] == pytest.approx(-slope, rel=1e-6)
    assert f.params["A"] == pytest.approx(np.exp(intercept), rel=1e-5)
    assert set(f.params) == {"A", "alpha"} and f.delta is None
    with pytest.raises(ValueError, match=r"loss must be one of \('huber_log', 'mse_log'\)"):
        scaling.fit("pure_power", {"x": x}, y, loss="l1")


TRUTH = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}


def _chinchilla_loss(N, D, t=TRUTH):
    return t["E"] + t["A"] / N ** t["alpha"] + t["B"] / D ** t["beta"]


def _isoflop_runs(noise, seed=0, budgets=np.geomspace(1e18, 1e22, 6)):
    rng = np.random.default_rng(seed)
    N, D, C = [], [], []
    for c in budgets:
        n_opt = ((TRUTH["alpha"] * TRUTH["A"]) / (TRUTH["beta"] * TRUTH["B"])) ** (
            1 / (TRUTH["alpha"] + TRUTH["beta"])) * (c / 6) ** (TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"]))
        for n in n_opt * np.geomspace(0.1, 10, 9):
            N.append(n), D.append(c / (6 * n)), C.append(c)
    N, D, C = map(np.array, (N, D, C))
    return N, D, C, _chinchilla_loss(N, D) * np.exp(noise * rng.standard_normal(len(N)))


def test_isoflop_parabolas_against_a_brute_force_fit_and_recovered_exponents():
    N, D, C, L = _isoflop_runs(0.01)
    iso = scaling.isoflop(N, D, L, n_bootstrap=100)
    assert len(iso.budgets) == 6 and list(iso.counts) == [9] * 6
    np.testing.assert_allclose(iso.budgets, np.unique(C), rtol=1e-9)
    for g, c in enumerate(np.unique(C)):  # normal equations, then the minimum by a dense grid search
        sel = C == c
        X = np.stack([np.ones(sel.sum()), np.log(N[sel]), np.log(N[sel]) ** 2], 1)
        coef = np.linalg.solve(X.T @ X, X.T @ L[sel])
        np.testing.assert_allclose(iso.coef[g], coef, rtol=1e-6, atol=1e-9)
        grid = np.linspace(np.log(N[sel]).min() - 3, np.log(N[sel]).max() + 3, 200_001)
        best = grid[np.argmin(coef[0] + coef[1] * grid + coef[2] * grid ** 2)]
        assert np.log(iso.N_opt[g]) == pytest.approx(best, abs=1e-4)
    np.testing.assert_allclose(6 * iso.N_opt * iso.D_opt, iso.budgets, rtol=1e-9)
    a_true = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    lo, hi = iso.intervals["a"]
    assert lo <= a_true <= hi, (lo, a_true, hi)
    assert iso.a == pytest.approx(a_true, abs=0.02)
    assert iso.a + iso.b == pytest.approx(1.0, abs=1e-9)
    # budgets given explicitly group the same way
    assert scaling.isoflop(N, D, L, flops=C).a == pytest.approx(iso.a)


def test_isoflop_refuses_degenerate_input():
    N, D, C, L = _isoflop_runs(0.0)
    one = C == C.min()
    with pytest.raises(ValueError, match="one compute budget; exponents need at least 2 budgets"):
        scaling.isoflop(N[one], D[one], L[one])
    keep = ~((C == C.max()) & (np.arange(len(C)) % 9 > 1))  # 2 sizes left in the largest budget
    with pytest.raises(ValueError, match="has 2 distinct model sizes; a parabola needs at least 3"):
        scaling.isoflop(N[keep], D[keep], L[keep])
    with pytest.raises(ValueError, match="is not convex"):
        scaling.isoflop(N, D, -L + 10)
    with pytest.raises(ValueError, match=r"loss must be finite with shape \[54\]"):
        scaling.isoflop(N, D, L[:-1])


@pytest.mark.slow
def test_a_chinchilla_fit_recovers_its_exponents_and_allocates_compute_optimally():
    """One fit and one bootstrap serve both checks: the exponents lie in their 99% bootstrap intervals,
    and compute_optimal matches the closed form, a brute-force search along k N D = C, and its intervals."""
    N, D, _, L = _isoflop_runs(0.01, seed=3)
    f = scaling.fit("chinchilla", {"N": N, "D": D}, L)
    boot = f.bootstrap(30, jax.random.key(1), level=0.99)
    for k in ("alpha", "beta"):
        assert boot[k][0] <= TRUTH[k] <= boot[k][1], (k, boot[k])
    C = np.array([1e19, 1e21, 1e23])
    al = scaling.compute_optimal(f, C)
    p = f.params
    a, b = p["beta"] / (p["alpha"] + p["beta"]), p["alpha"] / (p["alpha"] + p["beta"])
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    np.testing.assert_allclose(al.N, G * (C / 6) ** a, rtol=1e-9)
    np.testing.assert_allclose(al.D, (C / 6) ** b / G, rtol=1e-9)
    np.testing.assert_allclose(6 * al.N * al.D, C, rtol=1e-9)
    assert (al.a, al.b) == pytest.approx((a, b))
    np.testing.assert_allclose(al.loss, f.predict({"N": al.N, "D": al.D}), rtol=1e-12)
    for c, n_opt in zip(C, al.N):  # the fitted loss along k N D = C is lowest there
        n = n_opt * np.geomspace(0.5, 2, 2001)
        assert n[np.argmin(f.predict({"N": n, "D": c / (6 * n)}))] == pytest.approx(n_opt, rel=2e-3)
    ci = scaling.compute_optimal(f, C, bootstrap=boot).intervals
    assert ci["a"][0] <= a <= ci["a"][1] and np.all(ci["N"][0] <= ci["N"][1])
    with pytest.raises(ValueError, match="needs a fit of the 'chinchilla' law"):
        scaling.compute_optimal(scaling.fit("power", {"x": N[:9]}, L[:9]), C)


@pytest.mark.slow
def test_the_command_line_fits_any_table(tmp_path):
    import json

    import pandas as pd

    rng = np.random.default_rng(4)
    rows = []
    for task, (E, A, alpha) in {"a": (0.2, 3.0, 0.5), "b": (0.1, 2.0, 0.3)}.items():
        for c in np.geomspace(1e3, 1e7, 30):
            for waste in (1.0, 1.5, 3.0):  # runs off the frontier are worse
                rows.append({"task": task, "compute": c, "loss": (E + A * c ** -alpha) * waste
                             * np.exp(0.01 * rng.standard_normal()), "keep": waste < 3})
    path = tmp_path / "table.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    # (Huber: the frontier of noisy runs keeps a few off-frontier points, which least squares would follow)
    rc = analysis.main(["--csv", str(path), "--x", "compute", "--y", "loss", "--group", "task", "--where", "keep",
                       "--frontier", "--bootstrap", "8", "--holdout", "--loss", "huber_log", "--out", str(tmp_path / "out")])
    assert rc == 0
    fits = json.load(open(tmp_path / "out" / "fits.json"))
    assert [f["group_value"] for f in fits] == ["a", "b"] and all(f["candidates"] == 60 for f in fits)
    assert {(f["group"], f["objective"]) for f in fits} == {("task", "huber_log")}
    assert fits[0]["params"]["alpha"] == pytest.approx(0.5, rel=0.15)
    assert all(f["holdout_are"] is not None for f in fits)
    report = open(tmp_path / "out" / "report.md").read()
    assert "fitted on the Pareto frontier" in report and "alpha [95% interval]" in report
    assert (tmp_path / "out" / "fit_task-a.png").exists() and (tmp_path / "out" / "fit_task-b.png").exists()
    # a law of two variables, and clear errors
    N, D, _, L = _isoflop_runs(0.01)
    pd.DataFrame({"N": N, "D": D, "loss": L}).to_csv(tmp_path / "c.csv", index=False)
    assert analysis.main(["--csv", str(tmp_path / "c.csv"), "--x", "N", "--x", "D", "--y", "loss", "--law",
                         "chinchilla", "--bootstrap", "0", "--out", str(tmp_path / "c")]) == 0
    assert "E + A / N^alpha + B / D^beta" in open(tmp_path / "c" / "report.md").read()
    assert analysis.main(["--csv", str(path), "--x", "compute", "--y", "los", "--out", str(tmp_path / "e")]) == 2
    assert analysis.main(["--csv", str(path), "--x", "compute", "--y", "loss", "--law", "chinchilla",
                         "--out", str(tmp_path / "e")]) == 2


def _seed_table(rng, xs, seeds, noise, E=0.2, A=1.5, alpha=0.4):
    import pandas as pd

    rows = [{"run": f"{x}-{s}", "metric": "eval/acc", "value": 1 - (E + A * x ** -alpha) * np.exp(rng.normal(0, noise)),
             "step": 1, "x": x, "seed": s} for x in xs for s in range(seeds)]
    return pd.DataFrame(rows)


def test_least_squares_on_log_recovers_a_planted_law_from_seeds():
    """error = 0.2 + 1.5 x^-0.4, 3 seeds at 8 x from 16 to 2048, 2% multiplicative noise: alpha within 0.06."""
    rng = np.random.default_rng(0)
    xs = np.geomspace(16, 2048, 8).round()
    alphas = [analysis.fit_groups(_seed_table(rng, xs, 3, 0.02), x="x", y="eval/acc", complement=True,
                                  n_bootstrap=0, holdout=False)[0].fit.params["alpha"] for _ in range(4)]
    assert all(abs(a - 0.4) < 0.06 for a in alphas), alphas


def test_a_fit_is_a_function_of_the_rows_not_their_order():
    """2 seeds at 6 x, 5% noise: every parameter, interval and the holdout ARE are equal under 5 row
    permutations (Huber with delta 1e-3 moved the holdout ARE with the row order), and the truth lies in the
    reported interval or the near-optimal range."""
    rng = np.random.default_rng(3)
    table = _seed_table(rng, np.geomspace(16, 512, 6).round(), 2, 0.05)
    fits = []
    for p in range(5):
        shuffled = table.sample(frac=1.0, random_state=p).reset_index(drop=True)
        (gf,) = analysis.fit_groups(shuffled, x="x", y="eval/acc", complement=True, n_bootstrap=16)
        fits.append(gf)
    first = fits[0]
    for gf in fits[1:]:
        for k, v in first.fit.params.items():
            assert gf.fit.params[k] == pytest.approx(v, rel=1e-6)
            assert gf.interval[k] == pytest.approx(first.interval[k], rel=1e-6)
        assert gf.holdout_are == pytest.approx(first.holdout_are, rel=1e-6)
    truth = {"E": 0.2, "A": 1.5, "alpha": 0.4}
    for k, v in truth.items():
        lo, hi = first.interval[k]
        nlo, nhi = first.fit.near_optimal[k]
        assert lo <= v <= hi or nlo <= v <= nhi, (k, v, first.interval[k], first.fit.near_optimal[k])


def test_the_saturation_test_and_the_residuals_and_the_floor():
    rng = np.random.default_rng(5)
    rising = _seed_table(rng, np.geomspace(16, 512, 6).round(), 3, 0.01)
    (gf,) = analysis.fit_groups(rising, x="x", y="eval/acc", complement=True, n_bootstrap=0)
    assert gf.saturation() == (512.0, 512.0)  # every x is beaten by a larger one: not saturated
    assert "not saturated" in analysis.baseline_report([gf], {}, x="x", group=None, complement=True)
    res = gf.residuals()
    assert [r["x"] for r in res] == sorted(np.unique(gf.x)) and max(abs(r["relative_residual"]) for r in res) < 0.05
    flat = rising.assign(value=lambda d: np.where(d.x >= 64, 0.8 + rng.normal(0, 0.002, len(d)), 0.5 + 0.001 * d.x))
    (gf,) = analysis.fit_groups(flat, x="x", y="eval/acc", complement=True, n_bootstrap=0)
    assert gf.saturation() == (64.0, 512.0)  # the first x from which no larger x is better
    assert any(r["outside"] for r in gf.residuals())  # a power law misses a step: flagged
    text = analysis.fit_report([gf], x="x", group=None, law="power", n_bootstrap=0)
    assert "largest residual" in text and "points beyond 2 sd" in text
    # runs below the floor (the untrained encoder) are left out and named; keep_below_floor puts them back
    (kept,) = analysis.fit_groups(rising, x="x", y="eval/acc", complement=True, n_bootstrap=0, floor=0.5)
    below = rising[rising.value < 0.5]
    assert len(kept.x) == len(rising) - len(below) > 0 and sorted(r[0] for r in kept.left_out) == sorted(below.run)
    assert "left out of the fit, below the untrained encoder" in analysis.baseline_report(
        [kept], {}, x="x", group=None, complement=True)
    a = analysis.Analysis(x="x", y="eval/acc", complement=True, n_bootstrap=0, keep_below_floor=True)
    assert len(a.fit(rising, floor=0.5)[0].x) == len(rising)


def test_arms_are_read_by_their_paired_differences_from_the_control():
    """Two arms and a control, three seeds: the seed effect (shared by every arm of a seed) cancels in the
    paired differences, which a comparison of means would drown; the t-test marks only the clear one."""
    import pandas as pd

    from jaxneg import analysis

    seed_effect = {0: 0.0, 1: 0.2, 2: -0.15}
    rows = [{"run": f"c{s}", "seed": s, "k": 0, "arm": "control", "metric": "eval/acc", "value": 0.5 + e}
            for s, e in seed_effect.items()]
    for s, e in seed_effect.items():
        rows.append({"run": f"a{s}", "seed": s, "k": 4, "arm": "a", "metric": "eval/acc",
                     "value": 0.5 + e + 0.03 + 0.001 * s})           # +0.030, +0.031, +0.032: clear
        rows.append({"run": f"b{s}", "seed": s, "k": 4, "arm": "b", "metric": "eval/acc",
                     "value": 0.5 + e + (0.02, -0.01, 0.005)[s]})     # signs disagree: not clear
    a = analysis.Analysis(x="k", y="eval/acc", group="arm", where="k > 0", control="k == 0")
    text = analysis.paired_report(pd.DataFrame(rows), a)
    assert "| 4 | +0.031 ± 0.001 (3/3) * | +0.005 ± 0.015 (2/3) |" in text, text
    assert analysis.paired_report(pd.DataFrame(rows), analysis.Analysis(x="k", y="eval/acc")) == ""
    two = pd.DataFrame(rows + [{**rows[0], "run": "c0bis"}])  # two controls of seed 0: no pairing
    assert "several runs per seed" in analysis.paired_report(two, a)
    # the control inside the arms (part 2's full batch): its cells say so, not a zero paired with itself
    inside = analysis.Analysis(x="k", y="eval/acc", group="arm", control="k == 0", complement=True)
    assert "| 0 | - | - | (control) |" in analysis.paired_report(pd.DataFrame(rows), inside)
    # each group's best point against the baselines; a group worse than one at every point is named. Arm a at a
    # second k, worse: the best point is the higher mean (an accuracy; its error is what is fitted)
    rows += [{**r, "run": r["run"] + "'", "k": 8, "value": r["value"] - 0.1} for r in rows if r["arm"] == "a"]
    text = analysis.points_floor_report(pd.DataFrame(rows), inside, {"raw input": 0.53, "untrained encoder": 0.1})
    # means over the seeds: a 0.5 + 0.01667 + 0.031 (k = 4), b 0.5 + 0.01667 + 0.005
    assert "- arm=a: best point k=4 with 0.5477 (+0.01767 over the raw input, +0.4477 over the untrained encoder)." \
           in text, text
    assert "- arm=b: best point k=4 with 0.5217 (0.008333 below the raw input, +0.4217 over the untrained encoder); " \
           "every point lies below the raw input." in text, text
    text = analysis.points_floor_report(pd.DataFrame(rows), inside, {"untrained encoder": 0.53})
    assert "- arm=b: best point k=4 with 0.5217 (0.008333 below the untrained encoder); every point lies below the " \
           "untrained encoder: these runs learned nothing, so no claim about k holds for them." in text, text
    # lower is better (an error, fitted as it is): the best point is the lower mean, and worse means above
    error = pd.DataFrame(rows).assign(value=lambda d: 1.0 - d.value)
    text = analysis.points_floor_report(error, dataclasses.replace(inside, complement=False),
                                        {"untrained encoder": 0.47})
    assert "- arm=a: best point k=4 with 0.4523 (0.01767 below the untrained encoder)." in text, text
    assert "- arm=b: best point k=4 with 0.4783 (0.008333 above the untrained encoder); every point lies above the " \
           "untrained encoder: these runs learned nothing" in text, text
    rows[0]["value"] = np.nan  # a missing value is left out, not a crash
    assert "arm=control" in analysis.points_floor_report(pd.DataFrame(rows), inside, {"untrained encoder": 0.1})


def test_a_law_is_drawn_only_where_it_beats_a_constant(tmp_path):
    """GroupFit.law_test: a power law with small seed noise beats a constant (nested F-test); flat noisy points
    do not, and the report draws their points with no law and says why (issue 40: exponents of -42.7 drawn
    through flat points)."""
    import pandas as pd

    from jaxneg import analysis

    rng = np.random.default_rng(0)
    xs = np.repeat([1, 3, 7, 15, 63], 3)
    rows = [{"run": f"{g}{i}", "metric": "eval/m", "step": 1, "k": int(x), "g": g,
             "value": float(v + rng.normal(0, 0.004))}
            for g, fn in (("law", lambda x: 0.2 + 0.5 * x ** -0.7), ("flat", lambda x: 0.45 + 0 * x))
            for i, (x, v) in enumerate((x, fn(x)) for x in xs)]
    df = pd.DataFrame(rows)
    a = analysis.Analysis(x="k", y="eval/m", group="g", n_bootstrap=20)
    fits = {gf.group: gf for gf in a.fit(df)}
    law, flat = fits["law"].law_test(), fits["flat"].law_test()
    assert law["supported"] and law["p"] < 1e-6
    assert not flat["supported"] and "does not beat a constant" in flat["reason"]
    path = analysis.write_report(df, [a], str(tmp_path), title="t")
    text = open(path).read()
    assert "g=flat: no law drawn: the law does not beat a constant" in text and "g=law: law drawn" in text
    f = {r["group_value"]: r["law_test"]["supported"] for r in json.load(open(tmp_path / "fits.json"))}
    assert f == {"law": True, "flat": False}
