"""A BEIR-format retrieval dataset from a local folder, tokenised by hashing (no vocabulary to download).

The folder holds what every BEIR dataset ships (Thakur et al. 2021; SciFact, NFCorpus, FiQA, ...)::

    corpus.jsonl        {"_id": "...", "title": "...", "text": "..."} per line
    queries.jsonl       {"_id": "...", "text": "..."} per line
    qrels/test.tsv      query-id <tab> corpus-id <tab> score, after a header line (also train.tsv, dev.tsv)

:func:`load` gives the splits the pairs task reads: ``corpus`` (``doc_id`` = the line's position in
``corpus.jsonl``, ``tokens``, ``group`` = ``doc_id``: no document is known to duplicate another),
and for a qrels split one row per query (``tokens``, ``doc_id`` its first relevant document, ``group``
that document's, and ``relevant [R]``: every document with a positive score, padded with -1, which the
retrieval metrics count as relevant). ``train`` has one row per (query, relevant document) pair: what
the pairs task trains on. Tokens are ``1 + crc32(word) mod (vocab_size - 1)`` of the lower-cased
alphanumeric words (0 pads), the title before the text, cut to ``doc_len`` / ``query_len``.

    python -m experiments.sweep --config experiments/configs/quickstart.py:parts=3,retrieval_data=/data/scifact \\
        --workdir runs/scifact
"""

from __future__ import annotations

import json
import os
import re
import zlib

import numpy as np

#: the hashing tokenizer's defaults (``data.config`` of a run may override them)
DEFAULTS = {"vocab_size": 1 << 15, "doc_len": 128, "query_len": 32}
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str, length: int, vocab_size: int) -> np.ndarray:
    """``[length]`` int32 token ids of ``text`` by the hashing tokenizer (0 pads)."""
    ids = [1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in _WORD.findall(text.lower())][:length]
    out = np.zeros(length, np.int32)
    out[:len(ids)] = ids
    return out


def _jsonl(path: str, fields: tuple) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON object ({e.msg})") from None
            if not isinstance(row, dict) or any(k not in row for k in fields):
                raise ValueError(f"{path}:{n}: needs the fields {list(fields)}, got "
                                 f"{sorted(row) if isinstance(row, dict) else type(row).__name__}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _qrels(path: str, queries: dict, docs: dict) -> dict:
    """``{query id: [doc row, ...]}`` of the pairs with a positive score, in file order."""
    out: dict = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and parts[:2] == ["query-id", "corpus-id"] or not line.strip():
                continue
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: needs 3 tab-separated fields (query-id, corpus-id, score), "
                                 f"got {len(parts)}")
            q, d, score = parts
            try:
                score = float(score)
            except ValueError:
                raise ValueError(f"{path}:{n}: score {score!r} is not a number") from None
            if q not in queries:
                raise ValueError(f"{path}:{n}: query-id {q!r} is not in queries.jsonl")
            if d not in docs:
                raise ValueError(f"{path}:{n}: corpus-id {d!r} is not in corpus.jsonl")
            if score > 0:
                out.setdefault(q, []).append(docs[d])
    if not out:
        raise ValueError(f"{path}: no (query, document) pair with a positive score")
    return out


def load(folder: str, split: str, *, vocab_size: int = DEFAULTS["vocab_size"], doc_len: int = DEFAULTS["doc_len"],
         query_len: int = DEFAULTS["query_len"]) -> dict:
    """``{field: array}`` of ``split`` (``corpus`` or a qrels file's name: ``train``, ``dev``, ``test``) of
    the BEIR folder ``folder``; errors name the file and line. See the module docstring."""
    if not folder or not os.path.isdir(folder):
        raise ValueError(f"beir: data_dir must be a BEIR folder (corpus.jsonl, queries.jsonl, qrels/), got {folder!r}")
    for name, value in (("vocab_size", vocab_size), ("doc_len", doc_len), ("query_len", query_len)):
        if not isinstance(value, int) or value < 2:
            raise ValueError(f"beir: {name} must be an integer >= 2, got {value!r}")
    corpus = _jsonl(os.path.join(folder, "corpus.jsonl"), ("_id", "text"))
    docs = {str(r["_id"]): i for i, r in enumerate(corpus)}
    if len(docs) != len(corpus):
        raise ValueError(f"{os.path.join(folder, 'corpus.jsonl')}: repeated _id values")
    if split == "corpus":
        tokens = np.stack([tokenize(f"{r.get('title') or ''} {r['text']}", doc_len, vocab_size) for r in corpus])
        ids = np.arange(len(corpus), dtype=np.int64)
        return {"doc_id": ids, "tokens": tokens, "group": ids.copy()}
    path = os.path.join(folder, "qrels", f"{split}.tsv")
    if not os.path.exists(path):
        have = sorted(f[:-4] for f in os.listdir(os.path.join(folder, "qrels")) if f.endswith(".tsv")) \
            if os.path.isdir(os.path.join(folder, "qrels")) else []
        raise ValueError(f"beir: no split {split!r} in {folder} (qrels/{split}.tsv); splits: corpus, {', '.join(have)}")
    queries = {str(r["_id"]): r["text"] for r in _jsonl(os.path.join(folder, "queries.jsonl"), ("_id", "text"))}
    qrels = _qrels(path, queries, docs)
    if split == "train":  # one row per (query, relevant document) pair
        pairs = [(q, d) for q, ds in qrels.items() for d in ds]
        tokens = np.stack([tokenize(queries[q], query_len, vocab_size) for q, _ in pairs])
        doc = np.array([d for _, d in pairs], np.int64)
        return {"tokens": tokens, "doc_id": doc, "group": doc.copy()}
    width = max(len(ds) for ds in qrels.values())
    relevant = np.full((len(qrels), width), -1, np.int64)
    for i, ds in enumerate(qrels.values()):
        relevant[i, :len(ds)] = ds
    tokens = np.stack([tokenize(queries[q], query_len, vocab_size) for q in qrels])
    return {"tokens": tokens, "doc_id": relevant[:, 0].copy(), "group": relevant[:, 0].copy(), "relevant": relevant}
