"""How long a BEIR document must be for the dense encoder: part 3 on a BEIR folder at several ``doc_len``.

For each ``doc_len``, part 3 of the main job (in-batch k = 0 and hard_topk k = 15, the same seeds) trains
on the folder, and the script reports each run's test nDCG@10, the paired difference of hard from in-batch,
the training seconds per step (the programs' ``steps`` time over their steps; one process, so the lengths
compare on the same machine), the share of documents and queries cut, and the hashing tokenizer's collision
rate at the vocabulary size (distinct words that share a token id with another word).

    python benchmarks/beir_doc_len.py --data ../shared/data/beir/scifact --lengths 128,256,512 --seeds 2 \\
        --out runs/doc_len
"""

import argparse
import collections
import json
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def collisions(folder: str, vocab_size: int) -> dict:
    """Distinct words of the corpus and queries, and the share of them whose hashed id another word also has."""
    from jaxneg.data import beir

    words = set()
    for text in beir.texts(folder, "corpus") + beir.texts(folder, "queries"):
        words.update(beir._WORD.findall(text.lower()))
    ids = collections.Counter(1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in words)
    shared = sum(c for c in ids.values() if c > 1)
    return {"distinct_words": len(words), "distinct_ids": len(ids), "words_sharing_an_id": shared,
            "collision_rate": shared / len(words)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--lengths", default="128,256,512")
    p.add_argument("--vocab", type=int, default=0, help="vocab_size (default: beir.DEFAULTS)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", default="runs/doc_len")
    a = p.parse_args()

    from experiments import sweep
    from experiments.configs import quickstart
    from jaxneg import results
    from jaxneg.data import beir

    rows = []
    vocab = a.vocab or beir.DEFAULTS["vocab_size"]
    for length in map(int, a.lengths.split(",")):
        spec = quickstart.get_config(f"parts=3,mined=0-15,samplers=hard,seeds={a.seeds},retrieval_steps={a.steps},"
                                     f"retrieval_data={a.data}")
        for part in spec.parts:
            part.overrides["data.config"] = {"doc_len": length, "vocab_size": vocab}
        spec.analyses = ()
        workdir = os.path.join(a.out, f"doc_len_{length}_vocab_{vocab}")
        sweep.run(spec, workdir, progress=False, baselines=False)
        df = results.load(os.path.join(workdir, "runs"))
        ndcg = df[df.metric == "eval/ndcg@10"].set_index("run").value
        accounts = sweep.program_accounts(os.path.join(workdir, "runs"), list(ndcg.index))
        per_step = {prog: acc["steps"] / max(1, a.steps) for prog, acc in accounts.values()}
        corpus = beir.load(a.data, "corpus", doc_len=length)
        test = beir.load(a.data, "test", doc_len=length)
        by_seed = {}
        for run, v in ndcg.items():
            by_seed.setdefault(int(run.split("seed=")[1].split(",")[0]), {})["hard" if run.startswith("hard") else "in-batch"] = v
        diffs = [d["hard"] - d["in-batch"] for d in by_seed.values()]
        rows.append({"doc_len": length, "vocab_size": vocab, "ndcg@10": {r: round(float(v), 4) for r, v in ndcg.items()},
                     "hard_minus_inbatch": [round(x, 4) for x in diffs],
                     "seconds_per_step": {k: round(v, 4) for k, v in per_step.items()},
                     "docs_cut": float(np.mean(corpus["length"] > length)),
                     "queries_cut": float(np.mean(test["length"] > beir.DEFAULTS["query_len"]))})
        print(json.dumps(rows[-1]), flush=True)
    out = {"rows": rows, "hashing": collisions(a.data, vocab)}
    print(json.dumps(out["hashing"]))
    with open(os.path.join(a.out, f"doc_len_vocab_{vocab}.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
