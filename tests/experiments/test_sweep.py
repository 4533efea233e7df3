"""experiments.sweep: expansion and validation, the local and submitit backends, resume, the analysis."""

import json
import re
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments import sweep as S
from experiments import train as T
from jaxneg import analysis, results, scaling
from tests.experiments.helpers import SMALL_SWEEP, config, small_sweep

def test_expand_takes_the_grid_product_and_zips_fields_together():
    points = S.expand(small_sweep())
    assert [p.name for p in points] == [f"temperature={t},batch_size={b},steps={s}"
                                        for t in ("0.1", "0.5") for b, s in ((8, 4), (16, 4), (32, 2))]
    p = points[4]
    assert p.overrides == {"loss.temperature": 0.5, "batch_size": 16, "steps": 4}
    assert (p.config.loss.temperature, p.config.batch_size, p.config.steps) == (0.5, 16, 4)
    assert p.config.progress is False and points[0].config.loss.temperature == 0.1
    # the base config is not modified; a sweep without axes is one run
    assert small_sweep().base.batch_size == 32
    assert [p.name for p in S.expand(small_sweep(grid={}, zip=()))] == ["run"]
    # fields with the same last component keep their full path in the name
    names = S.expand(small_sweep(grid={"model.kwargs": ({"channels": (8,)},), "loss.kwargs": ({},)}, zip=()))
    assert names[0].name.startswith("model.kwargs=") and ",loss.kwargs=" in names[0].name


@pytest.mark.parametrize("kw,match", [
    ({"grid": {"loss.temprature": (0.1,)}}, "unknown config field 'loss.temprature'"),
    ({"grid": {"loss.name": ("ntxent", "infonc")}}, r"sweep point name=infonc,batch_size=8,steps=4: unknown loss .*valid names"),
    ({"grid": {"batch_size": (16, 30)}, "zip": {}}, "batch_size=30.*divisible by the 4 devices"),
    ({"zip": {"batch_size": (8, 16), "steps": (4,)}}, "equal lengths"),
    ({"grid": {"batch_size": (8,)}}, "'batch_size' is swept twice"),
    ({"grid": {"seed": ()}}, "non-empty list"),
    ({"grid": {"loss.kwargs": ({"tau_plus": 0.1},)}}, r"loss.kwargs: unknown argument\(s\) \['tau_plus'\]"),
])
def test_every_point_is_validated_before_anything_runs(tmp_path, monkeypatch, kw, match):
    monkeypatch.setattr(S, "prepare_data", lambda *a: pytest.fail("data was prepared before validation"))
    sw = small_sweep(**kw)
    sw.base.num_devices = 4
    with pytest.raises(ValueError, match=match):
        S.run(sw, str(tmp_path), progress=False, baselines=False)
    assert not os.listdir(tmp_path)


def test_analysis_fields_and_backends_are_checked(tmp_path):
    with pytest.raises(ValueError, match="'batch' is not a config field"):
        S.run(small_sweep(analyses=(S.Analysis(x="batch", y="eval/knn_accuracy"),)), str(tmp_path))
    with pytest.raises(ValueError, match="unknown scaling law 'powr'"):
        S.run(small_sweep(analyses=(S.Analysis(x="batch_size", y="eval/knn_accuracy", law="powr"),)), str(tmp_path))
    with pytest.raises(ValueError, match="backend must be one of"):
        S.run(small_sweep(), str(tmp_path), backend="kubernetes")


def test_a_sweep_writes_every_run_and_the_analysis(finished_sweep):
    d, summary = finished_sweep
    assert summary["failed"] == {} and len(summary["finished"]) == 6 and summary["skipped"] == []
    for name in summary["finished"]:
        assert os.path.exists(os.path.join(d, "runs", name, "result.json"))
    for f in ("results.csv", "fits.json", "report.md", "sweep.json", "summary.json", "knn_accuracy_error_vs_batch_size.png"):
        assert os.path.getsize(os.path.join(d, f)) > 0, f
    fits = json.load(open(os.path.join(d, "fits.json")))
    assert [f["group_value"] for f in fits] == [0.1, 0.5]
    for f in fits:  # the analysis' identity beside its data
        assert (f["x"], f["y"], f["group"], f["law"], f["objective"]) == (
            "batch_size", "eval/knn_accuracy", "loss.temperature", "power", "mse_log")
    for f in fits:  # the fitted points are exactly 1 - the runs' kNN accuracies
        assert f["left_out"] == [] and f["keep_below_floor"]
        for b, err in zip(f["points"]["x"], f["points"]["y"]):
            name = f"temperature={f['group_value']},batch_size={int(b)},steps={4 if b < 32 else 2}"
            res = json.load(open(os.path.join(d, "runs", name, "result.json")))
            assert err == pytest.approx(1 - res["eval"]["knn_accuracy"], abs=1e-12)
        assert set(f["params"]) == {"E", "A", "alpha"} and f["interval"]["alpha"][0] <= f["interval"]["alpha"][1]
    report = open(os.path.join(d, "report.md")).read()
    assert "6 of 6 runs finished" in report and "a test sweep" in report
    assert "![1 - eval/knn_accuracy vs batch_size](knn_accuracy_error_vs_batch_size.png)" in report
    csv = pd.read_csv(os.path.join(d, "results.csv"))
    assert len(csv) == len(results.load(os.path.join(d, "runs")))


def test_the_time_account_sums_to_the_wall_time(finished_sweep):
    d, summary = finished_sweep
    acc = summary["time_account"]
    parts = acc["startup"] + acc["training"] + acc["baselines"] + acc["analysis"]
    assert parts == pytest.approx(acc["wall"], rel=0.1)
    # one process (--workers 1): the programs ran one after the other inside the training phase
    # 3 programs of 2 members; on CPU each member passes alone through its program's compiled step
    assert acc["programs"] == 3 and acc["passes"] == 6 and acc["program_total"] <= acc["training"] * 1.1
    assert acc["program_total"] == pytest.approx(sum(acc[f"program_{k}"] for k in T.Clock.PHASES), rel=1e-6)
    assert acc["program_steps"] > 0 and acc["program_compile"] > 0 and acc["program_evaluation"] > 0
    assert set(summary["analysis_seconds"]) == {a.heading() for a in small_sweep().analyses}
    res = json.load(open(os.path.join(d, "runs", summary["finished"][0], "result.json")))
    assert set(res["time_account"]) == set(T.Clock.PHASES) | {"total"}
    log = open(os.path.join(d, "runs", summary["finished"][0], "log.txt")).read()
    assert "member(s), time: " in log and "compile" in log
    assert "## Time" in open(os.path.join(d, "report.md")).read()


def test_the_baselines_are_computed_once_reported_and_equal_a_direct_computation(finished_sweep):
    import jax

    from experiments.tasks.common import first_rows
    from jaxneg import evaluation

    d, _ = finished_sweep
    (name, b), = json.load(open(os.path.join(d, "baselines.json"))).items()
    assert name == "mnist1d" and b["seeds"] == [0] and b["protocol"]["eval.knn_k"] == 20
    cfg = config("simclr_mnist1d", **SMALL_SWEEP)
    setup = T.build(cfg)
    tr, te = first_rows(setup.eval_train, cfg.eval.max_examples), first_rows(setup.test, cfg.eval.max_examples)
    flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)  # the signal view's identity view is the input
    knn = evaluation.knn_accuracy(flat(tr["x"]), tr["label"], flat(te["x"]), te["label"], k=cfg.eval.knn_k,
                                  temperature=cfg.eval.knn_temperature, num_classes=10)
    probe = evaluation.linear_probe(flat(tr["x"]), tr["label"], flat(te["x"]), te["label"], num_classes=10,
                                    steps=cfg.eval.probe_steps)["test_accuracy"]
    assert b["raw_input"] == {"eval/knn_accuracy": knn, "eval/linear_probe_accuracy": probe}
    untrained = T.evaluate(setup, T.init_params(setup, jax.random.key(0)))
    assert b["untrained_encoder"]["eval/knn_accuracy"] == untrained["knn_accuracy"]
    assert b["untrained_encoder_seeds"]["0"]["eval/linear_probe_accuracy"] == untrained["linear_probe_accuracy"]
    report = open(os.path.join(d, "report.md")).read()
    head, fits = report.split("## Fits", 1)
    assert "## Baselines" in head and f"| mnist1d | raw input | {knn:.4g} |" in head
    assert head.index("## Baselines") < head.index("## Runs") and "| below untrained encoder | below raw input |" in head
    assert f"Baselines of the same protocol: raw input {knn:.4g}, untrained encoder" in fits
    assert re.search("(over|below) the raw input", fits) and re.search("(over|below) the untrained encoder", fits)
    # a second analysis of the same directory reuses the file
    before = os.path.getmtime(os.path.join(d, "baselines.json"))
    S.write_baselines([cfg], d)
    assert os.path.getmtime(os.path.join(d, "baselines.json")) == before


def test_results_load_is_tidy_with_config_columns(finished_sweep):
    d, _ = finished_sweep
    df = results.load(os.path.join(d, "runs"))
    assert {"run", "metric", "value", "step", "batch_size", "loss.temperature", "model.kwargs.channels"} <= set(df.columns)
    assert df.groupby(["run", "metric"]).size().max() == 1  # one row per run and metric
    assert df.run.nunique() == 6
    for run, part in df.groupby("run"):
        res = json.load(open(os.path.join(d, "runs", run, "result.json")))
        got = dict(zip(part.metric, part.value))
        assert got == {**{f"eval/{k}": pytest.approx(v) for k, v in res["eval"].items()},
                       "final_loss": pytest.approx(res["final_loss"]), "wall_seconds": pytest.approx(res["wall_seconds"])}
        assert set(part.step) == {res["steps"]}
    assert sorted(results.varying(df)) == ["batch_size", "loss.temperature", "steps"]
    assert df["model.kwargs.channels"].iloc[0] == (8, 16)  # lists come back hashable
    hist = results.history(os.path.join(d, "runs"))
    one = hist[(hist.run == df.run.iloc[0]) & (hist.metric == "loss")]
    logged = [json.loads(line) for line in open(os.path.join(d, "runs", df.run.iloc[0], "metrics.jsonl"))]
    assert list(one.value) == pytest.approx([r["loss"] for r in logged if "loss" in r])


@pytest.mark.slow
def test_a_relaunch_skips_finished_runs_and_resumes_an_interrupted_one(finished_sweep, tmp_path, monkeypatch):
    src, _ = finished_sweep
    d = str(tmp_path / "copy")
    shutil.copytree(src, d)
    name = "temperature=0.5,batch_size=16,steps=4"
    run = os.path.join(d, "runs", name)
    before = json.load(open(os.path.join(run, "result.json")))
    os.remove(os.path.join(run, "result.json"))        # interrupted after its step-2 checkpoint
    shutil.rmtree(os.path.join(run, "checkpoints", "4"))
    os.remove(os.path.join(d, "runs", name, "manifests", "4.json"))
    started = []
    real = T.train_group
    monkeypatch.setattr(T, "train_group", lambda c, w, **kw: started.extend(map(os.path.basename, w)) or real(c, w, **kw))
    summary = S.run(small_sweep(), d, progress=False, baselines=False)
    assert started == [name] and summary["finished"] == [name] and len(summary["skipped"]) == 5
    after = json.load(open(os.path.join(run, "result.json")))
    assert after["resumed_from"] == 2
    # it ran in a program of two members (on CPU one at a time through one compiled step), and resumed alone
    assert after["eval"] == pytest.approx(before["eval"], rel=1e-5, abs=1e-6)
    assert after["final_loss"] == pytest.approx(before["final_loss"], rel=1e-6)


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = T.train_group

    def flaky(c, w, **kw):
        if c[0].loss.temperature == 0.5 and c[0].batch_size == 8:
            raise RuntimeError("device lost")
        return real(c, w, **kw)

    monkeypatch.setattr(T, "train_group", flaky)
    sw = small_sweep(zip={"batch_size": (8,), "steps": (2,)}, analyses=())
    summary = S.run(sw, str(tmp_path), progress=False, vectorize=False, baselines=False)
    bad = "temperature=0.5,batch_size=8,steps=2"
    assert summary["failed"] == {bad: "RuntimeError: device lost"} and len(summary["finished"]) == 1
    assert "device lost" in open(tmp_path / "runs" / bad / "error.txt").read()
    assert "1 of 2 runs finished" in open(tmp_path / "report.md").read()
    # a relaunch retries it (and clears the old error)
    monkeypatch.setattr(T, "train_group", real)
    again = S.run(sw, str(tmp_path), progress=False, baselines=False)
    assert again["finished"] == [bad] and again["failed"] == {}
    assert not os.path.exists(tmp_path / "runs" / bad / "error.txt")
    assert list(results.runs(str(tmp_path / "runs")).status) == ["finished"] * 2


def test_a_changed_base_config_is_refused_before_any_run(finished_sweep, tmp_path):
    src, _ = finished_sweep
    d = str(tmp_path / "copy")
    shutil.copytree(src, d)
    sw = small_sweep()
    sw.base.optimizer.learning_rate = 0.5
    with pytest.raises(ValueError, match="holds a sweep of another base config"):
        S.run(sw, d, progress=False, baselines=False)
    os.remove(os.path.join(d, "sweep.json"))  # without the sweep's record, each run directory is still checked
    with pytest.raises(ValueError, match=r"holds a run of a different config \(fields \['optimizer.learning_rate'\]"):
        S.run(sw, d, progress=False, baselines=False)


@pytest.mark.slow
def test_worker_processes_run_points_with_their_output_in_log_files(tmp_path):
    sw = small_sweep(grid={"seed": (0, 1)}, zip={"batch_size": (8,), "steps": (2,)}, analyses=())
    summary = S.run(sw, str(tmp_path), workers=2, progress=False, baselines=False)
    assert sorted(summary["finished"]) == ["seed=0,batch_size=8,steps=2", "seed=1,batch_size=8,steps=2"]
    # the same point in this process gives the same numbers as in a worker
    seq = S.run(sw, str(tmp_path / "seq"), progress=False, baselines=False)
    for name in seq["finished"]:
        a = json.load(open(tmp_path / "runs" / name / "result.json"))
        b = json.load(open(tmp_path / "seq" / "runs" / name / "result.json"))
        assert a["eval"] == b["eval"]
        assert os.path.exists(tmp_path / "runs" / name / "log.txt")


@pytest.mark.slow
def test_slurm_backend_through_submitit_local_executor(tmp_path):
    sw = small_sweep(grid={}, zip={"batch_size": (8,), "steps": (2,)}, analyses=())
    summary = S.run(sw, str(tmp_path), backend="slurm", cluster="local", slurm={"timeout_min": 10}, progress=False,
                    baselines=False)
    assert summary["finished"] == ["batch_size=8,steps=2"] and summary["failed"] == {}
    assert os.path.exists(tmp_path / "runs" / "batch_size=8,steps=2" / "result.json")
    assert os.listdir(tmp_path / "submitit")  # submitit's job folders


def test_the_command_line_lists_the_quickstart_points(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.sweep", "--config",
                          "experiments/configs/quickstart.py:batches=16-32-64-128-256,temperatures=0.1-0.2,seeds=2,"
                          "negatives=1-15-30-62-126,neg_batch=32,platform=accelerator,parts=1-2,sources=subsampled-memory",
                          "--dry_run"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(S.__file__)))))
    assert out.returncode == 0, out.stderr
    part1 = [f"temperature={t},seed={s},batch_size={b}" for t in ("0.1", "0.2") for s in (0, 1)
             for b in (16, 32, 64, 128, 256)]
    part2 = ([f"subsampled,seed={s},subsample={n}" for s in (0, 1) for n in (1, 15, 30, 62)]
             + [f"memory,seed={s},memory={m}" for s in (0, 1) for m in (64,)])
    assert out.stdout.split() == part1 + part2
    assert "30 points, all valid" in out.stderr


def test_the_quickstart_defaults_and_arguments():
    from experiments.configs import quickstart

    cpu, acc = quickstart.get_config("platform=cpu"), quickstart.get_config("platform=accelerator")
    assert cpu.grid["seed"] == (0, 1) and acc.grid["seed"] == (0, 1, 2)
    assert max(cpu.zip["batch_size"]) == 256 and max(acc.zip["batch_size"]) == 1024
    assert "keep the job under 10 minutes on 2 CPU cores" in cpu.description
    points = S.expand(acc)
    by_part = lambda ps, parts: [p for p in ps if (p.config.task == "pairs") == (parts == 3)]  # noqa: E731
    assert len(by_part(points, 12)) <= 105 and len(by_part(points, 3)) <= 160  # (part 3: two corpus sizes)
    assert {p.config.data.config.num_docs for p in by_part(points, 3)} == {16384, 65536}
    assert max(p.config.steps for p in points if p.config.tags.part in ("", "in-batch", *quickstart.SAMPLERS)) <= 400
    part2 = [p.config.steps for p in points if p.config.tags.part in quickstart.SOURCES]  # the queue's longer schedule
    assert set(part2) == {1000} and {p.config.steps for p in S.expand(cpu) if p.config.tags.part in quickstart.SOURCES} == {300}
    short = S.expand(quickstart.get_config("platform=accelerator,steps=50,seeds=1"))  # a budget given is part 2's too
    assert {p.config.steps for p in short if p.config.tags.part in quickstart.SOURCES} == {50}
    with pytest.raises(ValueError, match="neg_steps must be >= 1, got 0"):
        quickstart.get_config("platform=cpu,neg_steps=0")
    points = [p for p in S.expand(cpu) if p.config.task == "views"]
    full = 2 * 128 - 2
    n = {p.name: S.columns_row(cpu, p.config) for p in points}
    part2 = [r for r in n.values() if r["negatives_from"] != "batch"]
    assert sorted({r["negatives_per_anchor"] for r in part2 if r["negatives_from"] == "subsampled"}) == [1, 3, 15, 63, full]
    assert len({r["negatives_per_anchor"] for r in part2 if r["negatives_from"] == "memory"}) >= 4
    assert len({r["negatives_per_anchor"] for r in part2 if r["negatives_from"] == "queue"}) >= 4
    assert all(p.config.batch_size == 128 for p in points if p.name.startswith(("subsampled", "memory", "queue")))
    # part 1: one program per batch size (temperatures x seeds); part 2: one per source
    assert sorted(len(g) for g in S.plan(points)) == sorted([4] * 5 + [10, 8, 8])
    # part 3: one program per sampler, every k of it (traced) and every seed
    part3 = [p for p in S.expand(cpu) if p.config.task == "pairs"]
    assert sorted(len(g) for g in S.plan(part3)) == [2] + [8] * 5  # (k = 0, in-batch only, runs once)
    assert {p.config.tags.part for p in part3} == {"in-batch", *quickstart.SAMPLERS}
    assert sorted({p.config.sampler.num_negatives for p in part3}) == [0, 1, 3, 7, 15]
    for p in part3:  # the B - 1 other in-batch documents plus k drawn or mined, from the part's sampler
        row = S.columns_row(cpu, p.config)
        assert row["negatives_per_anchor"] == p.config.batch_size - 1 + p.config.sampler.num_negatives
        assert row["negatives_from"] == p.config.tags.part
    assert all(p.config.sampler.max_negatives == 15 for p in part3 if p.config.tags.part != "in-batch")
    # parts= and batches= / negatives= / mined= select parts, sources= picks the sources
    only2 = quickstart.get_config("platform=cpu,parts=2,seeds=2")
    assert not only2.grid and not only2.zip and [p.label for p in only2.parts] == ["subsampled", "memory", "queue"]
    assert all(a.x == "negatives_per_anchor" for a in only2.analyses)
    assert [p.label for p in quickstart.get_config("platform=cpu,batches=,mined=").parts] == [
        "subsampled", "memory", "queue"]
    only1 = quickstart.get_config("platform=cpu,negatives=,mined=")
    assert only1.parts == () and {a.x for a in only1.analyses} == {"batch_size"}
    only3 = quickstart.get_config("platform=cpu,parts=3,samplers=hard-oracle,mined=0-7")
    assert [p.label for p in only3.parts] == ["in-batch", "hard", "oracle"]
    assert [a.y for a in only3.analyses] == ["eval/mrr@10", "eval/false_negative_rate"]
    beir = quickstart.get_config("platform=cpu,parts=3,mined=0-7,retrieval_data=/data/scifact")
    assert beir.analyses[0].y == "eval/ndcg@10" and all(p.overrides["eval.ks"] == (1, 10, 100) for p in beir.parts)
    assert quickstart.get_config("platform=cpu,parts=3,retrieval_metric=recall@10").analyses[0].y == "eval/recall@10"
    sub = quickstart.get_config("platform=cpu,parts=2,sources=subsampled,negatives=1-3-15-63-255-1023,neg_batch=256")
    assert [p.label for p in sub.parts] == ["subsampled"] and sub.parts[0].zip == {"negatives.subsample": (1, 3, 15, 63, 255)}
    sizes = quickstart.get_config("platform=cpu,parts=3,samplers=hard,mined=0-7,seeds=1,retrieval_docs=2048-16384")
    rows = {(p.config.tags.part, p.config.data.config.num_docs, p.config.data.config.num_train_queries)
            for p in S.expand(sizes)}
    assert rows == {(s, n, 4 * n) for s in ("in-batch", "hard") for n in (2048, 16384)}  # the corpus size, an axis
    assert [a.where.endswith("num_docs == 2048") for a in sizes.analyses if a.y == "eval/mrr@10"] == [True, False]
    for arg, match in (("negatives=1-300", "between the full batch"), ("sources=fifo", "sources must be"),
                       ("parts=3,retrieval_docs=100", "retrieval_docs must be >= 256"),
                       ("batches=,negatives=,mined=", "nothing to run"), ("sources=memory,negatives=1-3", "no value of"),
                       ("parts=4", "parts must be some of"), ("samplers=hardest", "samplers must be some of"),
                       ("mined=3-3", "distinct counts"), ("parts=3,retrieval_metric=ndcg@100", "k in 1-10"),
                       ("parts=3,retrieval_metric=map@10", "retrieval_metric must be")):
        with pytest.raises(ValueError, match=match):
            quickstart.get_config("platform=cpu," + arg)


@pytest.mark.slow
@pytest.mark.optimized
def test_fit_groups_recovers_a_planted_power_law_per_group():
    rng = np.random.default_rng(0)
    rows = []
    truth = {0.1: (0.2, 3.0, 0.5), 0.5: (0.3, 2.0, 0.8)}
    for t, (E, A, alpha) in truth.items():
        for b in (8, 16, 32, 64, 128, 256, 512):
            err = (E + A * b ** -alpha) * np.exp(rng.normal(0, 0.002))
            rows.append({"run": f"{t}-{b}", "metric": "eval/acc", "value": 1 - err, "step": 1, "batch_size": b,
                         "loss.temperature": t})
    fits = analysis.fit_groups(pd.DataFrame(rows), x="batch_size", y="eval/acc", group="loss.temperature",
                              complement=True, n_bootstrap=20)
    for gf in fits:
        E, A, alpha = truth[gf.group]
        assert gf.fit.params["alpha"] == pytest.approx(alpha, rel=0.1)
        assert gf.fit.params["E"] == pytest.approx(E, rel=0.1)
        assert gf.holdout_are < 0.02
        lo, hi = gf.band([8, 512])
        assert np.all(lo <= hi)
    fig = analysis.plot_fits(fits, xlabel="batch size", group_label="T")
    assert len(fig.axes[0].collections) >= 4  # points and a band per group
    with pytest.raises(ValueError, match="metrics present: \\['eval/acc'\\]"):
        analysis.fit_groups(pd.DataFrame(rows), x="batch_size", y="eval/knn")
    with pytest.raises(ValueError, match="x='batch' is not a column"):
        analysis.fit_groups(pd.DataFrame(rows), x="batch", y="eval/acc")


def test_results_on_a_directory_without_runs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run"):
        results.load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        results.load(str(tmp_path / "nope"))


@pytest.mark.parametrize("module,arg,count", [
    ("wang_liu_temperature", None, 5), ("debiased_small_batch", None, 8), ("gradcache_table", None, 4),
    ("full_scale", "table=simclr_batch", 6), ("full_scale", "table=debiased_tau_plus", 4),
    ("full_scale", "table=uniformity_temperature", 5), ("wu_memory_bank", None, 4),
    ("rocketqa_denoised", "seeds=1", 13), ("simans_ambiguous", "mined=0-7,seeds=1", 4),
])
def test_paper_table_sweeps_expand_and_validate(module, arg, count):
    import importlib

    sw = importlib.import_module(f"experiments.reproduce.{module}").get_config(arg)
    points = S.expand(sw)
    assert len(points) == count
    if module == "gradcache_table":  # every arm makes the same number of parameter updates on 256 examples
        assert [p.config.steps // p.config.optimizer.accumulate for p in points] == [400] * 4
        assert [p.config.batch_size * p.config.optimizer.accumulate for p in points] == [256, 256, 256, 32]
    if arg == "table=simclr_batch":  # Table B.1: lr = B / 256 with LARS, 100 epochs of 50,000 images
        assert [(p.config.batch_size, p.config.optimizer.learning_rate) for p in points][-1] == (8192, 32.0)
        assert all(p.config.steps == 100 * 50_000 // p.config.batch_size for p in points)
    if module in ("rocketqa_denoised", "simans_ambiguous"):  # part 3 with the module's samplers, k = 0 once
        parts = [p.config.tags.part for p in points]
        assert parts[0] == "in-batch" and set(parts[1:]) == set(importlib.import_module(
            f"experiments.reproduce.{module}").SAMPLERS)
    if module == "wu_memory_bank":  # m slots drawn from the instance memory of every example; the last takes them all
        assert [p.config.negatives.subsample for p in points] == [1, 10, 512, 4000 - 1]
        assert all(p.config.negatives.instance and p.config.loss.name == "infonce" for p in points)


def test_the_report_gives_every_parameter_an_interval_and_says_what_the_data_cannot_support(finished_sweep):
    d, _ = finished_sweep
    report = open(os.path.join(d, "report.md")).read()
    for p in ("E", "A", "alpha"):
        assert f"| {p} [95% interval] |" in report or f" {p} [95% interval] |" in report
    assert "one run per x (no seeds)" in report and "3 distinct x for 3 parameters" in report
    runs_table = report.split("## Runs", 1)[1].split("## Fits", 1)[0]
    assert "final_loss" not in runs_table  # not comparable across batch sizes
    for f in json.load(open(os.path.join(d, "fits.json"))):
        assert f["points"]["x"] == sorted(f["points"]["x"])  # numeric order, not the run names' string order
        for k, (lo, hi) in f["interval"].items():
            assert lo <= f["params"][k] <= hi, (k, lo, f["params"][k], hi)
        assert f["warnings"]


@pytest.mark.slow
@pytest.mark.optimized
def test_intervals_contain_the_estimate_and_bands_stay_in_range(monkeypatch):
    rows = [{"run": str(b), "metric": "eval/acc", "value": 1 - (0.1 + 2.0 * b ** -0.5), "step": 1, "batch_size": b}
            for b in (8, 16, 32, 64, 128)]
    real = scaling.Fit.bootstrap

    def off_by_a_bit(self, n, key, level=0.95):  # refits that pile up just below the estimate of E
        out = real(self, n, key, level=level)
        out["E"] = (self.params["E"] * 0.5, self.params["E"] * 0.9)
        return out

    monkeypatch.setattr(scaling.Fit, "bootstrap", off_by_a_bit)
    (gf,) = analysis.fit_groups(pd.DataFrame(rows), x="batch_size", y="eval/acc", complement=True, n_bootstrap=8)
    assert gf.widened == ("E",) and gf.interval["E"][1] == gf.fit.params["E"]
    assert any("did not contain the estimate" in w for w in gf.warnings())
    lo, hi = gf.band(np.geomspace(0.01, 1e6, 50))
    assert lo.min() >= 0 and hi.max() <= 1  # an error rate stays in [0, 1]
    assert gf.predict([1e-4]).max() <= 1
    fig = analysis.plot_fits([gf], xlabel="batch_size")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("batch_size^-" in t for t in labels) and any("extrapolation" in t for t in labels)
    assert any("bootstrap band" in t for t in labels)


def test_a_relaunch_with_another_grid_is_refused_and_extend_adds_points(finished_sweep, tmp_path):
    src, _ = finished_sweep
    d = str(tmp_path / "copy")
    shutil.copytree(src, d)
    before = open(os.path.join(d, "sweep.json")).read()
    fewer = small_sweep(zip={"batch_size": (8,), "steps": (4,)})
    with pytest.raises(ValueError, match=r"holds a sweep of 6 points and this config has 2; it lacks 4: "
                                         r"temperature=0.1,batch_size=16,steps=4"):
        S.run(fewer, d, progress=False, baselines=False)
    more = small_sweep(grid={"loss.temperature": (0.1, 0.5, 0.9)})
    with pytest.raises(ValueError, match=r"it adds 3: temperature=0.9,batch_size=8,steps=4.*pass --extend"):
        S.run(more, d, progress=False, baselines=False)
    other = small_sweep()
    other.base.optimizer.learning_rate = 0.5
    with pytest.raises(ValueError, match=r"another base config \(fields \['optimizer.learning_rate'\]"):
        S.run(other, d, progress=False, baselines=False)
    assert open(os.path.join(d, "sweep.json")).read() == before  # nothing was overwritten
    added = small_sweep(grid={"loss.temperature": (0.9,)}, zip={"batch_size": (8,), "steps": (4,)})
    summary = S.run(added, d, progress=False, extend=True)
    assert summary["finished"] == ["temperature=0.9,batch_size=8,steps=4"]
    assert len(json.load(open(os.path.join(d, "sweep.json")))["points"]) == 7
    assert "7 of 7 runs finished" in open(os.path.join(d, "report.md")).read()


def test_progress_runs_logs_and_resume_messages(finished_sweep, tmp_path, capfd):
    src, _ = finished_sweep
    d = str(tmp_path / "copy")
    shutil.copytree(src, d)
    name = "temperature=0.1,batch_size=32,steps=2"
    os.remove(os.path.join(d, "runs", name, "result.json"))  # interrupted after its last checkpoint
    S.run(small_sweep(), d, progress=True, baselines=False)
    err = capfd.readouterr().err
    assert "sweep: 5 of 6 runs finished earlier, skipped: temperature=0.1,batch_size=8,steps=4" in err
    assert f"1 resume from a checkpoint: {name} at step 2" in err
    assert "analysis 1/1: fitting 1 - eval/knn_accuracy vs batch_size" in err
    assert "20/20" in err  # the bar counts steps over every run (4 + 4 + 2 per temperature)
    log = open(os.path.join(d, "runs", name, "log.txt")).read()
    assert "resuming from the checkpoint of step 2 of 2" in log and "finished: " in log
    first = open(os.path.join(src, "runs", "temperature=0.5,batch_size=8,steps=4", "log.txt")).read()
    assert "starting, 4 steps" in first and "step 4/4  loss" in first


@pytest.mark.slow
@pytest.mark.optimized
def test_seed_share_separates_seed_noise_from_the_trend():
    """Seeds at each x: the fit uses every run; the seed-only bootstrap is narrower than the full one,
    and grows with the seed noise."""
    rng = np.random.default_rng(1)

    def table(noise):
        rows = []
        for b in (8, 16, 32, 64, 128, 256):
            for s in range(3):
                err = (0.1 + 2.0 * b ** -0.6) * np.exp(rng.normal(0, noise))
                rows.append({"run": f"{b}-{s}", "metric": "eval/acc", "value": 1 - err, "step": 1, "batch_size": b,
                             "seed": s})
        return pd.DataFrame(rows)

    (quiet,) = analysis.fit_groups(table(0.002), x="batch_size", y="eval/acc", complement=True, n_bootstrap=16)
    (noisy,) = analysis.fit_groups(table(0.05), x="batch_size", y="eval/acc", complement=True, n_bootstrap=16)
    for gf in (quiet, noisy):
        assert gf.replicates() and len(gf.x) == 18 and gf.seed_interval is not None
        share = gf.seed_share()
        assert set(share) == {"E", "A", "alpha"} and all(0 < v <= 1.5 for v in share.values())
        xs, mean, sd, n = gf.seed_stats()
        assert list(n) == [3] * 6 and np.all(sd > 0)
    w = lambda gf: gf.seed_interval["alpha"][1] - gf.seed_interval["alpha"][0]
    assert w(noisy) > 5 * w(quiet)
    text = analysis.fit_report([noisy], x="batch_size", group=None, law="power", n_bootstrap=16)
    assert "seed share of interval width (E, A, alpha)" in text and "Seed share:" in text
    assert "no seeds" not in text
    fig = analysis.plot_fits([noisy], xlabel="batch_size", baselines={"raw input": 0.5, "untrained encoder": 0.7})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "mean ± sd over seeds (faint: each seed)" in legend
    assert "raw input: 0.5" in legend and "untrained encoder: 0.7" in legend
    assert sorted(line.get_ydata()[0] for line in fig.axes[0].get_lines() if line.get_label().startswith(("raw", "untr"))) \
        == [0.5, 0.7]
    lines = analysis.baseline_report([noisy], {"raw input": 0.5}, x="batch_size", group=None, complement=True)
    bx, by = noisy.best()
    assert f"best point batch_size={int(bx)} with {1 - by:.4g} ({1 - by - 0.5:+.4g} over the raw input)" in lines
    assert noisy.saturation()[1] == 256.0 and "saturat" in lines
    assert noisy.to_json()["seed_share"] == pytest.approx(noisy.seed_share())


def test_parts_columns_and_where_select_the_runs_an_analysis_fits():
    base = config("simclr_mnist1d", **SMALL_SWEEP)
    sw = S.Sweep(base=base, grid={"seed": (0, 1)}, zip={"batch_size": (8, 16)},
                 parts=(S.Part("moco", {"loss.name": "infonce", "moco.enabled": True, "moco.batch_negatives": True},
                               zip={"batch_size": (8, 8), "moco.queue_size": (0, 24)}),),
                 columns={"n": "batch_size - 1 + moco.queue_size", "src": "'queue' if moco.queue_size else 'batch'"},
                 analyses=(S.Analysis(x="n", y="eval/knn_accuracy", group="src", where="moco.enabled"),))
    points = S.expand(sw)
    assert [p.name for p in points][-2:] == ["moco,batch_size=8,queue_size=0", "moco,batch_size=8,queue_size=24"]
    assert points[-1].overrides == {"loss.name": "infonce", "moco.enabled": True, "moco.batch_negatives": True,
                                    "batch_size": 8, "moco.queue_size": 24}
    for a in sw.analyses:
        S.check_analysis(a, points, sw)
    rows = pd.DataFrame([S.columns_row(sw, p.config) for p in points])
    assert list(results.where(rows, "moco.enabled").n) == [7, 31]
    assert list(results.derive(rows, {"m": "n * 2"}).m) == [14, 30, 14, 30, 14, 62]
    with pytest.raises(ValueError, match="not a config field or a column"):
        S.check_analysis(S.Analysis(x="negatives", y="eval/knn_accuracy"), points, sw)
    with pytest.raises(ValueError, match="selects no point"):
        S.check_analysis(S.Analysis(x="n", y="eval/knn_accuracy", where="moco.queue_size > 100"), points, sw)
    with pytest.raises(ValueError, match="unknown name 'open'"):
        results.where(rows, "open('x')")


def test_workers_on_one_accelerator_share_its_memory(monkeypatch):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    S.share_device_memory(1)  # one process owns the device: XLA's default
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ
    S.share_device_memory(3)
    assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.300"
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.2")  # the user's own setting is kept
    S.share_device_memory(2)
    assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.2"
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION")
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # no preallocation: nothing to share
    S.share_device_memory(2)
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ


def test_each_analysis_and_each_run_is_read_against_its_own_protocols_baselines(finished_sweep, tmp_path):
    """A sweep of two evaluation protocols (as README command 1's MNIST-1D and retrieval parts): every run is
    flagged against its own protocol's untrained encoder, and each analysis whose runs share a protocol draws
    and states that protocol's baselines; one that spans both states none."""
    from experiments.sweep import report

    src, _ = finished_sweep
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    floors = json.load(open(d / "baselines.json"))
    (a_name, a), = floors.items()
    b_runs = [r for r in os.listdir(d / "runs") if r.startswith("temperature=0.5")]
    for r in b_runs:  # these runs now belong to another protocol: another dataset size
        cfg = json.load(open(d / "runs" / r / "config.json"))
        cfg["data"]["config"]["num_samples"] = 601
        (d / "runs" / r / "config.json").write_text(json.dumps(cfg))
    protocol_b = {**a["protocol"], "data.config.num_samples": 601}
    knn = "eval/knn_accuracy"
    floors = {a_name: {**a, "untrained_encoder": {knn: 0.0}, "raw_input": {knn: 0.01}},
              "mnist1d#2": {**a, "protocol": protocol_b, "untrained_encoder": {knn: 0.99}, "raw_input": {knn: 0.98}}}
    (d / "baselines.json").write_text(json.dumps(floors))
    assert report.run_protocols(str(d / "runs"), sorted(os.listdir(d / "runs")), floors) == {
        r: ("mnist1d#2" if r in b_runs else a_name) for r in os.listdir(d / "runs")}
    only_b = S.Analysis(x="batch_size", y=knn, complement=True, n_bootstrap=4, keep_below_floor=True,
                        where="loss.temperature == 0.5")
    both = S.Analysis(x="batch_size", y=knn, group="loss.temperature", complement=True, n_bootstrap=4,
                      keep_below_floor=True)
    text = open(report.analyze(small_sweep(analyses=(only_b, both)), str(d))).read()
    runs = text.split("## Runs", 1)[1].split("## Fits", 1)[0]
    # one table per part (the runs each analysis reads first), of one protocol each
    assert f"### mnist1d#2: {only_b.heading()} (3 runs)" in runs and f"### {a_name}: {both.heading()} (3 runs)" in runs
    for name, flagged in ((a_name, False), ("mnist1d#2", True)):  # flagged against its own untrained encoder
        rows = [l for l in runs.split(f"### {name}: ")[1].split("###")[0].splitlines()[4:] if l.startswith("|")]
        assert len(rows) == 3 and all(l.rstrip(" |").endswith("knn_accuracy") == flagged for l in rows), rows
    first, second = text.split("## Fits", 1)[1].split("\n### ")[1:3]
    assert "Baselines of the same protocol: raw input 0.98, untrained encoder 0.99" in first  # protocol B's
    assert "Baselines of the same protocol" not in second


def test_each_analysis_of_the_main_job_reads_runs_of_one_protocol():
    """README command 1 spans two evaluation protocols (MNIST-1D, the retrieval corpus): each analysis must
    select runs of one, or the report can draw no baseline for it and flag none of its runs."""
    import pandas as pd

    from experiments.configs import quickstart

    for arg in ("platform=cpu", "platform=accelerator"):
        spec = quickstart.get_config(arg)
        rows = []
        for p in S.expand(spec):
            flat = results_flat(p.config)
            rows.append({**flat, **S.columns_row(spec, p.config), "run": p.name,
                         "protocol": json.dumps(T.protocol(p.config), sort_keys=True, default=str)})
        table = pd.DataFrame(rows)
        assert table.protocol.nunique() == 1 + len(quickstart.DEFAULTS[arg.split("=")[1]]["retrieval_docs"].split("-"))
        for a in spec.analyses:
            chosen = results.where(table, a.where)
            assert len(chosen) and chosen.protocol.nunique() == 1, (arg, a.heading())


def results_flat(config):
    from experiments import config_lib
    from jaxneg import rundir

    return rundir.flat(config_lib.config_json(config))


@pytest.mark.slow
def test_every_fit_and_figure_of_the_main_job_carries_its_own_protocols_baselines(main_job):
    """README command 1, reduced (all three parts, two protocols): every fit section states the baselines of
    the protocol its runs share and draws them (fits.json records what the figure drew), every part gets a
    runs table, and ``negatives_per_anchor`` is each run's count (B, n, k)."""
    import pandas as pd

    d, spec = main_job
    floors = json.load(open(os.path.join(d, "baselines.json")))
    assert len(floors) == 2  # MNIST-1D and the retrieval corpus
    text = open(os.path.join(d, "report.md")).read()
    sections = text.split("## Fits", 1)[1].split("## Time", 1)[0].split("\n### ")[1:]
    assert len(sections) == len(spec.analyses)
    checked = 0
    for a, section in zip(spec.analyses, sections):  # (a diagnostic, the false-negative rate, has no baselines)
        protocol = "mnist1d" if "task == 'views'" in a.where else "synthetic_retrieval"
        untrained = floors[protocol]["untrained_encoder"].get(a.y)
        if untrained is not None:
            assert "Baselines of the same protocol" in section and f"untrained encoder {untrained:.4g}" in section, a.y
            assert "![" in section  # the figure (points, or the law where it beats a constant)
            assert "The runs' negatives" in section and "effective_negatives" in section  # their regime
            drawn = re.search(r"\]\(([^)]*_regime\.png)\)", section)  # and its figure
            assert drawn and os.path.getsize(os.path.join(d, drawn.group(1))) > 0, a.y
            checked += 1
    assert checked == len(spec.analyses) - 1
    fits = json.load(open(os.path.join(d, "fits.json")))
    assert all(f["baselines"] for f in fits if f["y"] != "eval/false_negative_rate")
    runs = text.split("## Runs", 1)[1].split("## Fits", 1)[0]
    assert sum(line.startswith("### ") for line in runs.splitlines()) == 3  # parts 1, 2 and 3
    table = pd.read_csv(os.path.join(d, "results.csv")).groupby("run").first()
    for run, row in table.iterrows():
        b = row["batch_size"]
        want = {"batch": 2 * b - 2, "subsampled": row["negatives.subsample"]}.get(
            row["negatives_from"], b - 1 + row["sampler.num_negatives"])
        assert row["negatives_per_anchor"] == want, run
