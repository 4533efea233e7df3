"""The pairs task's sources: the other queries' documents (``in-batch``), plus ``k`` documents per query drawn
or mined by a :data:`jaxneg.SAMPLERS` entry (``sampler.name``) with its settings. Every query also meets the
``B - 1`` in-batch documents, so a run has ``B - 1 + k`` negatives per anchor (popularity: ``K`` shared)."""

from jaxneg import SAMPLERS

from experiments.tasks.sources import Source, register


def count(config) -> int:
    """``B - 1 + k``: the other in-batch documents plus the ``sampler.num_negatives`` drawn or mined."""
    return config.batch_size - 1 + (config.sampler.num_negatives if config.sampler.name else 0)


def sampler(name: str, summary: str, sampler_name: str, kwargs=None, exclude_duplicates: bool = False) -> Source:
    """The source of ``k`` negatives per query from the sampler ``sampler_name`` with ``kwargs``: a run uses it
    when its ``sampler`` fields equal these; a mined one reports the false-negative rate of what it mines."""
    fields = {"sampler.name": sampler_name, "sampler.kwargs": dict(kwargs or {}),
              "sampler.exclude_duplicates": exclude_duplicates}
    mined = SAMPLERS.info(sampler_name).train == "mined"

    def uses(c):
        return (c.sampler.name == sampler_name and dict(c.sampler.kwargs) == fields["sampler.kwargs"]
                and bool(c.sampler.exclude_duplicates) == exclude_duplicates)

    return register(Source(
        name=name, task="pairs", summary=summary, uses=uses, count=count,
        setting=lambda k, job: {**fields, "sampler.num_negatives": k} if k > 0 else None, axis="sampler.num_negatives",
        reports=("false_negative_rate",) if mined and not exclude_duplicates else ()))


register(Source(name="in-batch", task="pairs", summary="the other queries' documents only (k = 0)",
                uses=lambda c: not c.sampler.name, rank=0, count=count,
                setting=lambda k, job: {"sampler.name": ""} if k == 0 else None))
sampler("uniform", "k documents per query drawn uniformly, never the positive", "uniform")
sampler("popularity", "K documents for the batch drawn by popularity (count^0.75), with log-Q", "popularity")
sampler("hard", "the top-k documents of an index re-encoded every sampler.refresh_every steps (ANCE)", "hard_topk")
sampler("filtered", "hard, without candidates scored above 0.95 of the positive (NV-Retriever)", "hard_topk",
        {"relative_margin": 0.05})
sampler("simans", "k of the top sampler.candidates sampled around the positive's score (SimANS)", "simans")
sampler("oracle", "hard that never mines a known duplicate of the positive", "hard_topk", exclude_duplicates=True)
