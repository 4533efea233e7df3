"""A BEIR-format retrieval dataset from a local folder, tokenised by hashing (no vocabulary to download).

The folder holds what every BEIR dataset ships (Thakur et al. 2021; SciFact, NFCorpus, FiQA, ...)::

    corpus.jsonl        {"_id": "...", "title": "...", "text": "..."} per line
    queries.jsonl       {"_id": "...", "text": "..."} per line (any other field, e.g. SciFact's
                        ``metadata``, which lists the evidence documents, is never read)
    qrels/test.tsv      query-id <tab> corpus-id <tab> score, after a header line (also train.tsv, dev.tsv)

:func:`load` gives the splits the pairs task reads: ``corpus`` (``doc_id`` = the line's position in
``corpus.jsonl``, ``tokens``, ``group`` = ``doc_id``: no document is known to duplicate another,
``length``: its number of words before the cut), and for a qrels split one row per query with a
positive score (``tokens``, ``doc_id`` its first relevant document, ``group`` that document's,
``relevant [R]``: every document with a positive score, padded with -1, ``grades [R]`` their
scores, the gains of a graded nDCG; ``query``: the query's line in ``queries.jsonl``, ``length``).
``train`` has one row per (query, relevant document) pair: what the pairs task trains on. Tokens
are ``1 + crc32(word) mod (vocab_size - 1)`` of the lower-cased alphanumeric words (0 pads), the
title before the text, cut to ``doc_len`` / ``query_len``. :func:`texts` gives the raw text (title
+ text; the queries) for the lexical baseline, which analyses text as the field does
(:func:`jaxneg.evaluation.bm25`).

**Cache.** A split is tokenised once: its arrays are stored (one ``.npy`` per field) under
:func:`cache_dir`, keyed by the content of the files it reads and the tokenizer's settings, and a
later load memory-maps them (read-only) without parsing or tokenising anything (BENCHMARKS.md: a
1 M-document folder). ``doc_len`` fixes the corpus array at ``N × doc_len`` int32: MS MARCO's 8.8 M
passages (~56 words) want ``doc_len`` 128, not the default 512 (18 GB).

**Getting data.** :func:`download` fetches and unpacks one of BEIR's published zips (a user with a
network; nothing here downloads by default).

    python -m experiments.sweep --config experiments/configs/quickstart.py:parts=3,retrieval_data=/data/scifact \\
        --workdir runs/scifact
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import warnings
import zipfile
import zlib

import numpy as np

#: the hashing tokenizer's defaults (``data.config`` of a run may override them), chosen on SciFact by measurement
#: (``benchmarks/beir_doc_len.py``, BENCHMARKS.md): ``doc_len`` 512 cuts 0.8 % of its abstracts (128 cut 91 %) and
#: lifts part 3's nDCG@10 by about +0.01 over 128 at 1.7x the hard-negative step time; ``vocab_size`` 2^18
#: (13 % of SciFact's distinct words share an id, against 66 % at 2^15) adds another +0.01 at 4x the step time
DEFAULTS = {"vocab_size": 1 << 15, "doc_len": 512, "query_len": 32}
_WORD = re.compile(r"[a-z0-9]+")
#: the layout of a cached split; a change of it (or of the tokenizer) invalidates every cache entry
CACHE_FORMAT = 1


def tokenize(text: str, length: int, vocab_size: int) -> np.ndarray:
    """``[length]`` int32 token ids of ``text`` by the hashing tokenizer (0 pads)."""
    return _tokenize(text, length, vocab_size)[0]


def _tokenize(text: str, length: int, vocab_size: int) -> tuple:
    """``(ids [length], number of words before the cut)``."""
    words = _WORD.findall(text.lower())
    out = np.zeros(length, np.int32)
    out[:min(len(words), length)] = [1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in words[:length]]
    return out, len(words)


def cache_dir() -> str:
    """Where tokenised splits are cached: ``$JAXNEG_DATA_DIR/beir`` when set, else
    ``$XDG_CACHE_HOME/jaxneg/beir`` (``~/.cache/jaxneg/beir``)."""
    if os.environ.get("JAXNEG_DATA_DIR"):
        return os.path.join(os.environ["JAXNEG_DATA_DIR"], "beir")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "jaxneg", "beir")


def _lines(path: str, fields: tuple):
    """``(line number, row)`` of each non-empty line of a JSON-lines file; errors name the file and line."""
    n = 0
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
            yield n, row
    if n == 0:
        raise ValueError(f"{path}: no rows")


def _doc_text(row: dict) -> str:
    return f"{row.get('title') or ''} {row['text']}"


def _unique_rows(path: str):
    """``(_id, row)`` of each line of a JSON-lines file, refusing a repeated ``_id`` (naming its line)."""
    seen = set()
    for n, row in _lines(path, ("_id", "text")):
        key = str(row["_id"])
        if key in seen:
            raise ValueError(f"{path}:{n}: repeated _id {key!r}")
        seen.add(key)
        yield key, row


def _ids(path: str) -> dict:
    """``{_id: row index}`` of a JSON-lines file, refusing repeated ids."""
    return {key: i for i, (key, _) in enumerate(_unique_rows(path))}


def _qrels(path: str, queries: dict, docs: dict) -> dict:
    """``{query row: {doc row: score}}`` of the pairs with a positive score, in file order."""
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
                out.setdefault(queries[q], {})[docs[d]] = score  # a repeated pair keeps its last score
    if not out:
        raise ValueError(f"{path}: no (query, document) pair with a positive score")
    return out


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _digest(paths, settings: dict) -> str:
    """The cache key: the content of ``paths`` and the tokenizer ``settings``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"format": CACHE_FORMAT, **settings}, sort_keys=True).encode())
    for p in paths:
        st = os.stat(p)
        h.update(_file_digest(os.path.abspath(p), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()


def _check_folder(folder: str) -> None:
    if not folder or not os.path.isdir(folder):
        raise ValueError(f"beir: data_dir must be a BEIR folder (corpus.jsonl, queries.jsonl, qrels/), got {folder!r}")


def _qrels_path(folder: str, split: str) -> str:
    path = os.path.join(folder, "qrels", f"{split}.tsv")
    if not os.path.exists(path):
        have = sorted(f[:-4] for f in os.listdir(os.path.join(folder, "qrels")) if f.endswith(".tsv")) \
            if os.path.isdir(os.path.join(folder, "qrels")) else []
        raise ValueError(f"beir: no split {split!r} in {folder} (qrels/{split}.tsv); splits: corpus, {', '.join(have)}")
    return path


def load(folder: str, split: str, *, vocab_size: int = DEFAULTS["vocab_size"], doc_len: int = DEFAULTS["doc_len"],
         query_len: int = DEFAULTS["query_len"], cache: bool = True) -> dict:
    """``{field: array}`` of ``split`` (``corpus`` or a qrels file's name: ``train``, ``dev``, ``test``) of
    the BEIR folder ``folder``; errors name the file and line. With ``cache`` (default) the arrays are read
    from, or written to, :func:`cache_dir`. See the module docstring."""
    _check_folder(folder)
    for name, value in (("vocab_size", vocab_size), ("doc_len", doc_len), ("query_len", query_len)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 2:
            raise ValueError(f"beir: {name} must be an integer >= 2, got {value!r}")
    corpus_path, queries_path = os.path.join(folder, "corpus.jsonl"), os.path.join(folder, "queries.jsonl")
    paths = [corpus_path] if split == "corpus" else [corpus_path, queries_path, _qrels_path(folder, split)]
    settings = {"split": split, "vocab_size": int(vocab_size), "doc_len": int(doc_len), "query_len": int(query_len)}
    if not cache:
        return _build(folder, split, settings)
    for p in paths:
        if not os.path.exists(p):
            raise ValueError(f"beir: {p} is missing")
    entry = os.path.join(cache_dir(), _digest(paths, settings), split)
    if os.path.isdir(entry):
        try:  # memory-mapped: a corpus larger than memory is paged in as it is read
            return {f[:-4]: np.load(os.path.join(entry, f), mmap_mode="r") for f in sorted(os.listdir(entry))
                    if f.endswith(".npy")}
        except (OSError, ValueError):  # a damaged entry: built again below
            shutil.rmtree(entry, ignore_errors=True)
    arrays = _build(folder, split, settings)
    tmp = None
    try:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(entry), prefix=f".{split}-")
        for k, v in arrays.items():
            np.save(os.path.join(tmp, f"{k}.npy"), v)
        os.rename(tmp, entry)  # whole or not at all; a concurrent writer's entry wins
    except OSError as e:
        if not os.path.isdir(entry):  # a read-only or full cache: the arrays are still good
            warnings.warn(f"beir: could not cache {split} of {folder} in {cache_dir()} ({e}); it will be "
                          f"tokenised again next time (set JAXNEG_DATA_DIR to a writable folder)", stacklevel=2)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return arrays


def _build(folder: str, split: str, settings: dict) -> dict:
    """Parse and tokenise one split (no cache)."""
    vocab_size, doc_len, query_len = settings["vocab_size"], settings["doc_len"], settings["query_len"]
    corpus_path = os.path.join(folder, "corpus.jsonl")
    if split == "corpus":
        with open(corpus_path, "rb") as f:  # the rows' count first, so the tokens are written in place
            rows = sum(1 for line in f if line.strip())
        tokens, lengths = np.zeros((rows, doc_len), np.int32), np.zeros(rows, np.int32)
        for i, (_, row) in enumerate(_unique_rows(corpus_path)):
            tokens[i], lengths[i] = _tokenize(_doc_text(row), doc_len, vocab_size)
        ids = np.arange(rows, dtype=np.int64)
        return {"doc_id": ids, "tokens": tokens, "group": ids.copy(), "length": lengths}
    path = _qrels_path(folder, split)
    docs = _ids(corpus_path)
    queries_path = os.path.join(folder, "queries.jsonl")
    query_rows = _ids(queries_path)
    qrels = _qrels(path, query_rows, docs)
    wanted = set(qrels)
    text = {}
    for _, row in _lines(queries_path, ("_id", "text")):  # only the split's queries are kept in memory
        r = query_rows[str(row["_id"])]
        if r in wanted:
            text[r] = _tokenize(row["text"], query_len, vocab_size)
    if split == "train":  # one row per (query, relevant document) pair
        pairs = [(q, d) for q, ds in qrels.items() for d in ds]
        doc = np.array([d for _, d in pairs], np.int64)
        return {"tokens": np.stack([text[q][0] for q, _ in pairs]), "doc_id": doc, "group": doc.copy(),
                "query": np.array([q for q, _ in pairs], np.int64),
                "length": np.array([text[q][1] for q, _ in pairs], np.int32)}
    width = max(len(ds) for ds in qrels.values())
    relevant = np.full((len(qrels), width), -1, np.int64)
    grades = np.zeros((len(qrels), width), np.float32)
    for i, ds in enumerate(qrels.values()):
        relevant[i, :len(ds)] = list(ds)
        grades[i, :len(ds)] = list(ds.values())
    return {"tokens": np.stack([text[q][0] for q in qrels]), "doc_id": relevant[:, 0].copy(),
            "group": relevant[:, 0].copy(), "relevant": relevant, "grades": grades,
            "query": np.array(list(qrels), np.int64), "length": np.array([text[q][1] for q in qrels], np.int32)}


def texts(folder: str, what: str) -> list:
    """The raw text of ``what``: ``"corpus"`` (each document's title + text, in ``corpus.jsonl``'s
    order = ``doc_id``) or ``"queries"`` (in ``queries.jsonl``'s order = a split's ``query``)."""
    _check_folder(folder)
    if what not in ("corpus", "queries"):
        raise ValueError(f"beir.texts: what must be 'corpus' or 'queries', got {what!r}")
    if what == "corpus":
        return [_doc_text(row) for _, row in _lines(os.path.join(folder, "corpus.jsonl"), ("_id", "text"))]
    return [str(row["text"]) for _, row in _lines(os.path.join(folder, "queries.jsonl"), ("_id", "text"))]


# ----------------------------------------------------------------------------- download

#: BEIR's published zips (Thakur et al. 2021, the ``beir`` repository's README) and their MD5 checksums
URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
MD5 = {
    "msmarco": "444067daf65d982533ea17ebd59501e4", "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d", "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114", "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99", "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78", "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c", "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03", "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}


def _safe_members(archive: zipfile.ZipFile, target: str) -> list:
    """The archive's members, refused (before anything is written) if one would land outside ``target``:
    an absolute path, a ``..`` part, or a symbolic link."""
    root = os.path.realpath(target)
    for info in archive.infolist():
        name = info.filename
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in re.split(r"[\\/]", name):
            raise ValueError(f"beir.download: refusing the archive: member {name!r} leaves the target folder")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError(f"beir.download: refusing the archive: member {name!r} is a symbolic link")
        dest = os.path.realpath(os.path.join(root, name))
        if dest != root and not dest.startswith(root + os.sep):
            raise ValueError(f"beir.download: refusing the archive: member {name!r} leaves the target folder")
    return archive.infolist()


def download(name: str, folder: str, *, url: str | None = None, md5: str | None = None) -> str:
    """Fetch BEIR dataset ``name`` (its published zip, :data:`URL`; or ``url``, e.g. a mirror or a
    ``file://`` path), check it, and unpack it into ``folder/name``; return that path.

    Checks, before anything lands in ``folder``: the zip's MD5 against ``md5`` (default :data:`MD5`
    of ``name``, where BEIR publishes one), the archive's integrity (every member's CRC), member paths
    that would leave the target (``../``, absolute paths, links: refused before anything is written),
    and the unpacked folder's layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/*.tsv``). The
    archive is unpacked into a temporary folder beside the target and renamed into place when complete,
    so a failure leaves no half-written dataset. An existing ``folder/name`` is kept as it is (delete it
    to fetch again). Nothing in jaxneg calls this unless asked.
    """
    import urllib.request

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"beir.download: name must be a BEIR dataset name such as 'scifact', got {name!r}")
    target = os.path.join(os.path.abspath(folder), name)
    if os.path.isdir(target):
        _check_layout(target)
        return target
    url = url or URL.format(name=name)
    md5 = md5 if md5 is not None else MD5.get(name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(target))
    try:
        archive_path = os.path.join(work, "archive.zip")
        h = hashlib.md5()
        with urllib.request.urlopen(url) as response, open(archive_path, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        if md5 and h.hexdigest() != md5:
            raise ValueError(f"beir.download: {url} has MD5 {h.hexdigest()}, expected {md5}: a truncated or "
                             f"altered download")
        try:
            with zipfile.ZipFile(archive_path) as archive:
                members = _safe_members(archive, os.path.join(work, "unpacked"))
                bad = archive.testzip()
                if bad is not None:
                    raise ValueError(f"beir.download: {url}: member {bad!r} is corrupt (CRC mismatch)")
                archive.extractall(os.path.join(work, "unpacked"), members=members)
        except zipfile.BadZipFile as e:
            raise ValueError(f"beir.download: {url} is not a complete zip archive ({e})") from None
        unpacked = os.path.join(work, "unpacked")
        inner = os.path.join(unpacked, name)  # BEIR's zips hold one folder named after the dataset
        source = inner if os.path.isdir(inner) else unpacked
        _check_layout(source)
        os.replace(source, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wrote = [f"{os.path.relpath(os.path.join(b, f), target)} ({os.path.getsize(os.path.join(b, f)):,} bytes)"
             for b, _, fs in sorted(os.walk(target)) for f in sorted(fs)]
    print(f"beir.download: wrote {target}: {', '.join(wrote)}", file=sys.stderr)
    return target


def _check_layout(path: str) -> None:
    missing = [f for f in ("corpus.jsonl", "queries.jsonl") if not os.path.isfile(os.path.join(path, f))]
    qrels = os.path.join(path, "qrels")
    if not os.path.isdir(qrels) or not any(f.endswith(".tsv") for f in os.listdir(qrels)):
        missing.append("qrels/*.tsv")
    if missing:
        raise ValueError(f"beir.download: {path} is not a BEIR folder: no {', '.join(missing)}")
