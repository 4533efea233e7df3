"""SimANS (Zhou et al., EMNLP 2022): ambiguous negatives against the hardest ones.

Claim (Table 2 there and its ablations): sampling negatives around the positive's score, ``p ∝ exp(-a (s -
s+ - b)^2)`` over the top-ranked candidates, beats training on the top-k hardest, which are more often
false negatives, on MS MARCO, Natural Questions and TriviaQA.

Ours: the main job's part 3 (``experiments/configs/quickstart.py``, parts=3) with ``hard`` (hard_topk, the
k hardest) against ``simans`` (k drawn by SimANS from the 64 hardest) and ``uniform`` (k random documents),
at k = 0 (in-batch only) to 15, on the synthetic corpus with planted duplicates, whose share among the
mined negatives (the false-negative rate) is known.

    python -m experiments.reproduce.simans_ambiguous --workdir runs/repro/simans [--workers 2]

``arg``: any quickstart option (``mined=``, ``seeds=``, ``retrieval_steps=``, ``retrieval_data=``).
"""

import sys

from experiments.reproduce import cli, mined_config, mined_rows, table

SAMPLERS = ("uniform", "hard", "simans")


def get_config(arg=None):
    return mined_config(SAMPLERS, arg)


def report(df, points, arg=None) -> str:
    """This table of the finished runs ``df`` (``points``: the sweep's, in order), as text."""
    out = []
    rows = [(k, base, m["uniform"], m["hard"], m["simans"], fn["hard"], fn["simans"],
             "yes" if m["simans"] >= m["hard"] else "no") for k, base, m, fn in mined_rows(df, points, SAMPLERS)]
    out.append(table(["k", "in-batch MRR@10", "uniform", "hardest", "SimANS", "FN rate hardest", "FN rate SimANS",
                 "SimANS >= hardest (paper: yes)"], rows))
    return "\n".join(out)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
