"""RocketQA (Qu et al., NAACL 2021), denoised against raw hard negatives, as the number of mined negatives grows.

Claim (Table 4 there, MS MARCO): hard negatives mined by the dual encoder itself include unlabelled
positives; trained on as they are, they lowered MRR@10, and the same negatives denoised (the candidates a
cross-encoder scores as likely positives removed) raised it.

Ours: the main job's part 3 (``experiments/configs/quickstart.py``, parts=3) with three samplers: ``hard``
(hard_topk, raw), ``filtered`` (hard_topk without candidates scored above 0.95 of the positive: the
denoising a retrieval library does without a cross-encoder, NV-Retriever's relative margin) and ``oracle``
(hard_topk that never mines a planted duplicate: perfect denoising), at k = 0 (in-batch only) to 15, on the
synthetic corpus whose planted duplicates make the false-negative rate of every mined set known.

    python -m experiments.reproduce.rocketqa_denoised --workdir runs/repro/rocketqa [--workers 2]

``arg``: any quickstart option (``mined=``, ``seeds=``, ``retrieval_steps=``, ``retrieval_data=``).
"""

import sys

from experiments.reproduce import cli, mined_config, mined_rows, table

SAMPLERS = ("hard", "filtered", "oracle")


def get_config(arg=None):
    return mined_config(SAMPLERS, arg)


def report(df, points, arg=None) -> str:
    """This table of the finished runs ``df`` (``points``: the sweep's, in order), as text."""
    out = []
    rows = [(k, base, m["hard"], m["filtered"], m["oracle"], fn["hard"], fn["filtered"],
             "yes" if m["filtered"] >= m["hard"] else "no") for k, base, m, fn in mined_rows(df, points, SAMPLERS)]
    out.append(table(["k", "in-batch MRR@10", "raw hard", "denoised (filtered)", "oracle", "FN rate raw",
                 "FN rate denoised", "denoised >= raw (paper: yes)"], rows))
    return "\n".join(out)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
