"""A BEIR folder at the size users bring: the first load (parse + tokenise + cache) against the cached load.

Generates a BEIR-format folder of ``--docs`` documents (MS MARCO-like passages of ~56 words drawn from a
Zipf vocabulary of 200,000 words; 10,000 test queries of ~6 words, one relevant document each), then loads
its ``corpus`` and ``test`` splits through :func:`jaxneg.data.beir.load` twice, each in a fresh process:
the first parses and tokenises and writes the cache, the second reads the cache. Reports each load's wall
time and peak resident memory (the process's, polled every 2 ms).

    python benchmarks/beir_load.py --docs 1000000 --folder /tmp/beir_1m --out benchmarks/results_beir_load_cpu.json
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._harness import PeakRSS, run_one  # noqa: E402


def generate(folder: str, docs: int, queries: int = 10_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(200_000)])
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.07
    p /= p.sum()
    os.makedirs(os.path.join(folder, "qrels"), exist_ok=True)
    chunk = 50_000
    with open(os.path.join(folder, "corpus.jsonl"), "w") as f:
        for start in range(0, docs, chunk):
            n = min(chunk, docs - start)
            lengths = rng.poisson(56, n) + 1
            words = vocab[rng.choice(len(vocab), lengths.sum(), p=p)]
            ends = np.cumsum(lengths)
            f.writelines(json.dumps({"_id": str(start + i), "title": "", "text": " ".join(words[e - l:e])}) + "\n"
                         for i, (e, l) in enumerate(zip(ends, lengths)))
    targets = rng.choice(docs, queries, replace=False)
    with open(os.path.join(folder, "queries.jsonl"), "w") as f:
        for i in range(queries):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(vocab[rng.choice(len(vocab), 6, p=p)])}) + "\n")
    with open(os.path.join(folder, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"q{i}\t{d}\t1\n" for i, d in enumerate(targets))


def worker(folder: str, cache: str) -> dict:
    os.environ["JAXNEG_DATA_DIR"] = cache
    from jaxneg.data import beir

    with PeakRSS() as mem:
        t = time.perf_counter()
        corpus = beir.load(folder, "corpus")
        test = beir.load(folder, "test")
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "peak_rss_gb": mem.peak, "docs": len(corpus["tokens"]), "queries": len(test["tokens"]),
            "corpus_tokens_gb": corpus["tokens"].nbytes / 2**30}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3])))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "beir_generated"))
    p.add_argument("--out", default="")
    a = p.parse_args()
    t = time.perf_counter()
    generate(a.folder, a.docs)
    size = sum(os.path.getsize(os.path.join(b, f)) for b, _, fs in os.walk(a.folder) for f in fs)
    gen = time.perf_counter() - t
    cache = tempfile.mkdtemp(prefix="beir-cache-")
    try:
        first = run_one(__file__, [a.folder, cache], timeout=3600)
        cached = run_one(__file__, [a.folder, cache], timeout=3600)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out = {"docs": a.docs, "folder_gb": size / 2**30, "generate_seconds": gen, "first_load": first,
           "cached_load": cached, "speedup": first.get("seconds", 0) / max(cached.get("seconds", 1e-9), 1e-9)}
    print(json.dumps(out, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
