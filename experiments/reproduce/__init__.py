r"""Paper tables: one command per table, small-scale analogs that run on a CPU and the full-scale grids.

Each module is a sweep config (``get_config(arg) -> experiments.sweep.Sweep``, so
``python -m experiments.sweep --config experiments/reproduce/<name>.py`` runs it too) and a
command that runs the sweep (skipping finished runs) and prints our numbers beside the
paper's claim::

    python -m experiments.reproduce.wang_liu_temperature --workdir runs/repro/wang_liu
    python -m experiments.reproduce.debiased_small_batch --workdir runs/repro/debiased
    python -m experiments.reproduce.gradcache_table --workdir runs/repro/gradcache
    python -m experiments.reproduce.wu_memory_bank --workdir runs/repro/wu
    python -m experiments.reproduce.full_scale --config simclr_batch --workdir /big/disk/simclr  # accelerators

Each module holds a sweep config and ``report(df, points, arg)`` (its table, as text); :mod:`.cli` is the
command line that runs one. The analogs reproduce each paper's *comparison* on MNIST-1D, not its absolute numbers: the
"paper" column states the claim being tested, and the last column says whether our runs agree.
"""

from __future__ import annotations



def table(head, rows) -> str:
    """A plain-text table (columns padded to their widest cell)."""
    cells = [[str(h) for h in head]] + [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def metric(df, name, **where):
    """The mean of metric ``name`` over the runs whose config columns equal ``where``."""
    rows = df[df.metric == name]
    for k, v in where.items():
        rows = rows[rows[k] == v]
    if rows.empty:
        return float("nan")
    return float(rows.value.mean())


def mined_config(samplers, arg=None):
    """The main job's part 3 (:mod:`experiments.configs.quickstart`, ``parts=3``) with ``samplers`` only;
    ``arg``: any further quickstart option (``mined=``, ``seeds=``, ``retrieval_steps=``, ``retrieval_data=``)."""
    from experiments.configs import quickstart

    return quickstart.get_config(",".join(filter(None, [f"parts=3,samplers={'-'.join(samplers)}", arg])))


def mined_rows(df, points, samplers):
    """Per ``k > 0`` of part 3's ``points``, in order: ``(k, in-batch MRR@10, {sampler: MRR@10},
    {sampler: false-negative rate})``, each the mean over the seeds."""
    ks = sorted({p.config.sampler.num_negatives for p in points if p.config.sampler.num_negatives})
    base = metric(df, "eval/mrr@10", **{"tags.part": "in-batch"})
    for k in ks:
        at = lambda name, s: metric(df, name, **{"tags.part": s, "sampler.num_negatives": k})  # noqa: E731
        yield k, base, {s: at("eval/mrr@10", s) for s in samplers}, {s: at("eval/false_negative_rate", s)
                                                                      for s in samplers}


def spearman(x, y) -> float:
    import numpy as np

    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])
