"""Negative sources as one registered abstraction (``experiments.tasks.sources``): the main job's columns come
from each run's source, and a new source or sampler is one registration that the step, the main job and its
analyses pick up with no other edit (the extension trials of BENCHMARKS.md, "Where negatives come from")."""

import numpy as np
import pytest

from experiments import spec
from experiments.configs import quickstart
from experiments.tasks import sources
from jaxneg import samplers
from tests.experiments.helpers import SMALL_SWEEP, config

# ---- the part 2 trial: everything a new source needs, in one registration (a module of sources/ would end
# ---- with the same call). Counted in BENCHMARKS.md: the lines from here to the end marker.


def recent_source():
    """A bank of the encoder's embeddings of its last ``r`` batches only (``negatives.recent = r``), beside
    the whole batch: ``2B - 2 + rB`` negatives per anchor. ``r`` is a member field: any ``r > 0`` share one
    program (each member uses the first ``r B`` slots of the longest bank)."""
    slots = lambda hp, b: hp.recent * b  # noqa: E731
    return sources.Source(
        name="recent", task="views", summary="the whole batch plus the embeddings of the last r batches",
        uses=lambda c: bool(c.negatives.recent), count=lambda c: (2 + c.negatives.recent) * c.batch_size - 2,
        setting=lambda n, job: ({"negatives.recent": (n + 2) // job.batch_size - 2}
                                if n > 2 * job.batch_size - 2 and (n + 2) % job.batch_size == 0 else None),
        axis="negatives.recent", config={"negatives.recent": 0},
        members=(sources.MemberField("negatives.recent", "recent", np.int32),),
        bank=sources.Bank(
            "recent", init=lambda c, num_train, dim, key: samplers.queue_init(c.negatives.recent * c.batch_size, dim),
            push=lambda bank, p, hp: samplers.queue_push(bank, p.values, size=slots(hp, p.values.shape[0]),
                                                         ids=p.ids, step=p.step),
            valid=lambda bank, step, hp: bank.mask, size=lambda bank, hp, c: slots(hp, c.batch_size)),
        reports=("bank_fill", "bank_age", "bank_drift"))
# ---- end of the part 2 trial


@pytest.fixture
def recent():
    source = sources.register(recent_source())
    yield source
    sources.unregister(source.name)


def test_a_new_source_is_one_registration_its_member_field_runs_vectorised_and_its_age_is_its_own(tmp_path, recent):
    from experiments import train as T

    tiny = dict(SMALL_SWEEP, steps=4, checkpoint_every=4, log_every=4, batch_size=8, num_devices=1)
    members = [config("simclr_mnist1d", seed=s, **tiny, **{"negatives.recent": r}) for s, r in ((0, 1), (1, 3))]
    assert sources.of(members[0]) is recent and T.group_key(members[0]) == T.group_key(members[1])
    results = T.train_group(members, [str(tmp_path / "r1"), str(tmp_path / "r3")], members_per_step=2)
    # one vmapped program; at the last step (3) the bank holds the pushes of steps 2 (r = 1), or 0 to 2 (r = 3)
    assert results[0]["program"] == results[1]["program"]
    assert [r["eval"]["bank_fill"] for r in results] == [1.0, 1.0]
    assert [r["eval"]["bank_age"] for r in results] == [pytest.approx(1.0), pytest.approx(2.0)]
    alone = T.train(members[1], str(tmp_path / "alone"))  # the member equals its run alone
    assert alone["final_loss"] == pytest.approx(results[1]["final_loss"], rel=1e-5)
    assert alone["eval"]["bank_age"] == pytest.approx(2.0)


def test_the_main_job_runs_a_new_source_by_name_and_its_defaults_do_not_change(recent):
    default = quickstart.get_config("platform=cpu,parts=2,seeds=1")
    assert {p.label for p in default.parts} == set(quickstart.SOURCES)  # registering adds nothing by default
    sweep = quickstart.get_config("platform=cpu,parts=2,seeds=1,sources=subsampled-recent,negatives=3-254-510")
    points = spec.expand(sweep)
    runs = {(row["negatives_from"], row["negatives_per_anchor"]) for row in (spec.columns_row(sweep, p.config)
                                                                           for p in points)}
    assert runs == {("subsampled", 3), ("subsampled", 254), ("recent", 510)}  # 2B - 2 + 2B at B = 128
    assert "recent: the whole batch plus the embeddings of the last r batches" in sweep.description
    with pytest.raises(ValueError, match="sources must be some of .*recent"):
        quickstart.get_config("platform=cpu,parts=2,sources=nothing")


def test_negatives_per_anchor_is_each_sources_count_for_every_run_of_the_main_job():
    sweep = quickstart.get_config("platform=cpu,seeds=1")
    seen = set()
    for p in spec.expand(sweep):
        c, row = p.config, spec.columns_row(sweep, p.config)
        b = c.batch_size
        want = {"batch": 2 * b - 2, "subsampled": c.negatives.subsample, "memory": 2 * b - 2 + c.negatives.memory,
                "queue": c.moco.queue_size}.get(row["negatives_from"], b - 1 + c.sampler.num_negatives)
        assert row["negatives_per_anchor"] == want, p.name
        assert row["negatives_from"] == (c.tags.part or "batch")  # each part is its source
        seen.add(row["negatives_from"])
    assert seen == {"batch", *quickstart.SOURCES, "in-batch", *quickstart.SAMPLERS}


def test_a_new_sampler_joins_every_analysis_it_declares_with_no_list_to_edit():
    from experiments.tasks.sources import retrieval

    retrieval.sampler("margin", "hard, without candidates within 0.1 of the positive", "hard_topk",
                      {"absolute_margin": 0.1})
    try:
        sweep = quickstart.get_config("platform=cpu,parts=3,seeds=1,samplers=hard-margin-uniform,mined=0-3")
        labels = {p.label for p in sweep.parts}
        assert labels == {"in-batch", "hard", "margin", "uniform"}
        points = spec.expand(sweep)
        for a in sweep.analyses:  # the metric's fit takes every sampler; the false-negative rate the mined ones
            chosen = {spec.columns_row(sweep, p.config)["negatives_from"] for p in points
                      if spec.results.evaluate_expression(a.where, spec.columns_row(sweep, p.config))}
            assert chosen == ({"hard", "margin"} if a.y == "eval/false_negative_rate" else {"hard", "margin", "uniform"})
    finally:
        sources.unregister("margin")
