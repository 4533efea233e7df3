"""The BEIR-format loader on a folder the test writes: splits, relevance, hashing tokens and clear errors."""

import json
import os
import zlib

import numpy as np
import pytest

from jaxneg import data, evaluation


def _write(folder, corpus=None, queries=None, test=None, train=None):
    corpus = corpus or [{"_id": "d0", "title": "Cats", "text": "cats purr softly"},
                        {"_id": "d1", "title": "", "text": "Dogs bark LOUDLY at night"},
                        {"_id": "d2", "title": "Birds", "text": "birds sing; birds fly"}]
    queries = queries or [{"_id": "q0", "text": "why do cats purr"}, {"_id": "q1", "text": "loud dogs"},
                          {"_id": "q2", "text": "singing birds"}]
    folder.mkdir(exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels" / "test.tsv").write_text(test or "query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t2\nq1\td2\t1\n"
                                                       "q2\td2\t0\n")
    (folder / "qrels" / "train.tsv").write_text(train or "query-id\tcorpus-id\tscore\nq0\td0\t1\nq2\td2\t1\nq2\td0\t1\n")
    return str(folder)


def test_a_beir_folder_loads_as_the_pairs_task_reads_it(tmp_path):
    folder = _write(tmp_path / "tiny")
    cfg = {"vocab_size": 101, "doc_len": 6, "query_len": 4}
    corpus = data.load("beir", "corpus", data_dir=folder, config=cfg)
    np.testing.assert_array_equal(corpus.arrays["doc_id"], [0, 1, 2])
    np.testing.assert_array_equal(corpus.arrays["group"], [0, 1, 2])
    word = lambda w: 1 + zlib.crc32(w.encode()) % 100  # noqa: E731
    np.testing.assert_array_equal(corpus.arrays["tokens"][0], [word("cats"), word("cats"), word("purr"),
                                                               word("softly"), 0, 0])  # title first, lower case
    np.testing.assert_array_equal(corpus.arrays["tokens"][1], [word(w) for w in "dogs bark loudly at night".split()] + [0])
    test = data.load("beir", "test", data_dir=folder, config=cfg)
    # one row per query with a positive score (q2's only pair has score 0); every relevant document listed
    np.testing.assert_array_equal(test.arrays["relevant"], [[0, -1], [1, 2]])
    np.testing.assert_array_equal(test.arrays["grades"], [[1, 0], [2, 1]])  # the qrels' scores: graded gains
    np.testing.assert_array_equal(test.arrays["doc_id"], [0, 1])
    np.testing.assert_array_equal(test.arrays["query"], [0, 1])  # lines of queries.jsonl
    np.testing.assert_array_equal(test.arrays["length"], [4, 2])  # words before the cut at query_len 4
    np.testing.assert_array_equal(corpus.arrays["length"], [4, 5, 5])
    train = data.load("beir", "train", data_dir=folder, config=cfg)
    np.testing.assert_array_equal(train.arrays["doc_id"], [0, 2, 0])  # one row per (query, document) pair
    np.testing.assert_array_equal(train.arrays["tokens"][1], train.arrays["tokens"][2])
    # relevance counts every listed document: q1 ranks d2 then d1 (both relevant), q0 ranks d1 then d0
    m = evaluation.ranking_metrics(np.array([[1, 0], [2, 1]]), test.arrays["group"], corpus.arrays["group"], ks=(1, 2),
                                   relevant=test.arrays["relevant"])
    assert m["recall@1"] == pytest.approx((0 + 0.5) / 2) and m["mrr@2"] == pytest.approx((0.5 + 1) / 2)
    assert m["recall@2"] == 1.0


@pytest.mark.parametrize("what, files, match", [
    ("bad json", {"corpus": "{\"_id\": \"d0\", \"text\": \"a\"}\n{not json\n"}, r"corpus.jsonl:2: not a JSON object"),
    ("no text", {"queries": "{\"_id\": \"q0\"}\n"}, r"queries.jsonl:1: needs the fields \['_id', 'text'\]"),
    ("two fields", {"test": "query-id\tcorpus-id\tscore\nq0\td0\n"}, r"test.tsv:2: needs 3 tab-separated fields"),
    ("unknown doc", {"test": "query-id\tcorpus-id\tscore\nq0\td9\t1\n"}, r"test.tsv:2: corpus-id 'd9' is not in"),
    ("unknown query", {"test": "q7\td0\t1\n"}, r"test.tsv:1: query-id 'q7' is not in queries.jsonl"),
    ("score", {"test": "q0\td0\thigh\n"}, r"test.tsv:1: score 'high' is not a number"),
])
def test_a_malformed_beir_file_names_the_file_and_line(tmp_path, what, files, match):
    folder = _write(tmp_path / "bad", test=files.get("test"))
    if "corpus" in files:
        (tmp_path / "bad" / "corpus.jsonl").write_text(files["corpus"])
    if "queries" in files:
        (tmp_path / "bad" / "queries.jsonl").write_text(files["queries"])
    with pytest.raises(ValueError, match=match):
        data.load("beir", "corpus" if "corpus" in files else "test", data_dir=folder)


def test_beir_needs_a_folder_and_names_its_splits(tmp_path):
    with pytest.raises(ValueError, match="data_dir must be a BEIR folder"):
        data.load("beir", "corpus", data_dir=str(tmp_path / "nowhere"))
    folder = _write(tmp_path / "tiny")
    with pytest.raises(ValueError, match=r"no split 'dev' .*splits: corpus, test, train"):
        data.load("beir", "dev", data_dir=folder)


def test_part_3_of_the_main_job_trains_on_a_beir_folder(tmp_path):
    from experiments import train
    from experiments.config_lib import set_field
    from experiments.configs import quickstart, simclr_mnist1d

    folder = _write(tmp_path / "tiny")
    c = simclr_mnist1d.get_config()
    for k, v in {**quickstart.retrieval(folder, steps=2, max_k=1), "sampler.name": "hard_topk", "sampler.kwargs": {},
                 "sampler.num_negatives": 1, "batch_size": 2, "num_devices": 1, "log_every": 1, "checkpoint_every": 2,
                 "eval.ks": (1, 2), "eval.num_candidates": 2, "progress": False}.items():
        set_field(c, k, v)
    result = train.train(c, str(tmp_path / "run"))
    assert result["status"] == "finished" and {"mrr@2", "recall@2", "false_negative_rate"} <= set(result["eval"])
    assert result["eval"]["false_negative_rate"] == 0.0  # (no duplicates known)
    floor = train.baselines(c, [0])
    assert set(floor["raw_input"]) >= {"eval/mrr@1", "eval/recall@2"}
    # BM25 on the raw text with the field's analyser: "singing birds" finds "birds sing; birds fly" (stemmed),
    # "why do cats purr" finds the cats (stopwords dropped); the report names the analyser and the cuts
    assert floor["raw_input"]["eval/mrr@1"] == 1.0
    method = floor["raw_input_notes"]["method"]
    assert "raw text (title + text, full length" in method and "Snowball" in method and "k1 1.5, b 0.75" in method
    assert "doc_len 512 (0.0% of the documents cut)" in method


def test_a_split_is_tokenised_once_and_its_cache_follows_the_content_and_the_settings(tmp_path, monkeypatch):
    from jaxneg.data import beir

    folder = _write(tmp_path / "tiny")
    monkeypatch.setenv("JAXNEG_DATA_DIR", str(tmp_path / "cache"))
    first = beir.load(folder, "test", doc_len=6)
    calls = []
    real = beir._build
    monkeypatch.setattr(beir, "_build", lambda *a: calls.append(a[1]) or real(*a))
    again = beir.load(folder, "test", doc_len=6)
    assert calls == [] and set(again) == set(first)  # read from the cache: nothing parsed or tokenised
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    beir.load(folder, "test", doc_len=7)  # other settings: another entry
    assert calls == ["test"]
    (tmp_path / "tiny" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td0\t3\n")
    changed = beir.load(folder, "test", doc_len=6)  # other content: another entry
    assert calls == ["test", "test"]
    np.testing.assert_array_equal(changed["relevant"], [[0]])
    np.testing.assert_array_equal(changed["grades"], [[3]])
    (tmp_path / "blocked").write_text("a file where the cache folder would go")
    monkeypatch.setenv("JAXNEG_DATA_DIR", str(tmp_path / "blocked"))
    with pytest.warns(UserWarning, match="could not cache test"):  # an unwritable cache: loaded all the same
        uncached = beir.load(folder, "test", doc_len=6)
    np.testing.assert_array_equal(uncached["grades"], [[3]])


def test_bm25_on_text_uses_the_standard_analyser():
    docs = ["The cats are purring", "Dogs barking loudly", "A study of birds singing"]
    idx, _ = evaluation.bm25(["purred cat", "the bark of dogs", "birds sang"], docs, k=1)
    assert idx[:, 0].tolist() == [0, 1, 2]  # stems meet ("purred" / "purring"), "the" and "of" are stopwords
    with pytest.raises(ValueError, match="both be text or both be token ids"):
        evaluation.bm25(["a query"], np.ones((2, 3), np.int32), k=1)
    with pytest.raises(ValueError, match=r"docs must be text \(a sequence of str\) or int token ids"):
        evaluation.bm25(["a query"], [1.5, 2.5], k=1)


def _trec(ranked, relevant, grades):
    """pytrec_eval's ndcg_cut / recall / recip_rank of ranked lists (descending scores, no ties)."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels = {f"q{i}": {f"d{d}": int(g) for d, g in zip(rel, gr) if d >= 0} for i, (rel, gr) in enumerate(zip(relevant, grades))}
    run = {f"q{i}": {f"d{d}": float(len(row) - r) for r, d in enumerate(row)} for i, row in enumerate(ranked)}
    return pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.1,3,10", "recall.1,3,10"}).evaluate(run)


def test_ranking_metrics_equal_trec_eval_with_graded_and_missing_judgements():
    """Random rankings of 40 documents against qrels with grades 1-3 (NFCorpus and TREC-COVID grade them),
    relevant documents that are never retrieved, and retrieved documents that are not judged."""
    rng = np.random.default_rng(0)
    q, n, top = 25, 40, 10
    ranked = np.stack([rng.permutation(n)[:top] for _ in range(q)])
    relevant = np.full((q, 6), -1)
    grades = np.zeros((q, 6))
    for i in range(q):
        r = rng.integers(1, 7)
        relevant[i, :r] = rng.choice(n, r, replace=False)
        grades[i, :r] = rng.integers(1, 4, r)
    got = evaluation.ranking_metrics(ranked, np.zeros(q, int), np.zeros(n, int), ks=(1, 3, 10), relevant=relevant,
                                     grades=grades)
    want = _trec(ranked, relevant, grades)
    for k in (1, 3, 10):
        assert got[f"ndcg@{k}"] == pytest.approx(np.mean([v[f"ndcg_cut_{k}"] for v in want.values()]), abs=1e-12)
        assert got[f"recall@{k}"] == pytest.approx(np.mean([v[f"recall_{k}"] for v in want.values()]), abs=1e-12)
    # trec_eval's recip_rank has no cut: equal to mrr@10 where every query has a relevant document in its top 10
    import pytrec_eval

    qrels = {f"q{i}": {f"d{d}": int(g) for d, g in zip(rel, gr) if d >= 0} for i, (rel, gr) in enumerate(zip(relevant, grades))}
    first = [next((r for r, d in enumerate(row) if d in set(relevant[i][relevant[i] >= 0])), None) for i, row in enumerate(ranked)]
    keep = [i for i, f in enumerate(first) if f is not None]
    run = {f"q{i}": {f"d{d}": float(top - r) for r, d in enumerate(ranked[i])} for i in keep}
    rr = pytrec_eval.RelevanceEvaluator({f"q{i}": qrels[f"q{i}"] for i in keep}, {"recip_rank"}).evaluate(run)
    sub = evaluation.ranking_metrics(ranked[keep], np.zeros(len(keep), int), np.zeros(n, int), ks=(10,),
                                     relevant=relevant[keep], grades=grades[keep])
    assert sub["mrr@10"] == pytest.approx(np.mean([v["recip_rank"] for v in rr.values()]), abs=1e-12)
    with pytest.raises(ValueError, match="grades of relevant documents must be > 0"):
        evaluation.ranking_metrics(ranked, np.zeros(q, int), np.zeros(n, int), ks=(1,), relevant=relevant,
                                   grades=np.where(relevant >= 0, 0.0, 1.0))


SCIFACT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), os.pardir,
                       "shared", "data", "beir", "scifact")


@pytest.mark.skipif(not os.path.isdir(SCIFACT), reason="SciFact is in ../shared/data/beir (not in a user's clone)")
def test_bm25_on_scifact_is_the_fields_baseline():
    """bm25s with the standard analyser: nDCG@10 0.686, recall@100 0.913 (bm25s' published figure; the BEIR
    paper's Elasticsearch: 0.665 / 0.908), scored as pytrec_eval scores the same lists."""
    from jaxneg.data import beir

    test = beir.load(SCIFACT, "test", cache=False)
    queries = beir.texts(SCIFACT, "queries")
    ranked, _ = evaluation.bm25([queries[i] for i in test["query"]], beir.texts(SCIFACT, "corpus"), k=100)
    m = evaluation.ranking_metrics(ranked, test["group"], np.arange(5183), ks=(10, 100), relevant=test["relevant"],
                                   grades=test["grades"])
    assert abs(m["ndcg@10"] - 0.686) < 0.01 and m["recall@100"] >= 0.90, m
    want = _trec(ranked, test["relevant"], test["grades"])
    assert m["ndcg@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in want.values()]), abs=1e-12)


# ----------------------------------------------------------------------------- download

def _zip(path, members, links=()):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            z.writestr(info, target)
    return path


def _dataset_zip(tmp_path, name="tiny", **extra):
    src = _write(tmp_path / "src")
    members = {f"{name}/{rel}": open(os.path.join(src, rel)).read()
               for rel in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv")}
    return _zip(tmp_path / f"{name}.zip", {**members, **extra})


def test_download_unpacks_a_checked_zip_and_says_what_it_wrote(tmp_path, capsys):
    import hashlib

    from jaxneg.data import beir

    archive = _dataset_zip(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    path = beir.download("tiny", str(tmp_path / "data"), url=archive.as_uri(), md5=md5)
    assert path == str(tmp_path / "data" / "tiny")
    assert beir.load(path, "test", cache=False)["relevant"].shape == (2, 2)
    err = capsys.readouterr().err
    assert f"wrote {path}: corpus.jsonl (" in err and "qrels/test.tsv (" in err
    assert sorted(os.listdir(tmp_path / "data")) == ["tiny"]  # nothing else left beside it
    assert beir.MD5["scifact"] == "5f7d1de60b170fc8027bb7898e2efca1"  # BEIR's published checksum


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "checksum"])
def test_a_damaged_download_fails_clearly_and_leaves_nothing(tmp_path, damage):
    from jaxneg.data import beir

    archive = _dataset_zip(tmp_path)
    data = archive.read_bytes()
    md5 = None
    if damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
        match = "not a complete zip archive"
    elif damage == "corrupt":  # one byte of a member's stored data flipped: its CRC no longer matches
        i = data.index(b'"_id"') + 2
        archive.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
        match = "is corrupt|not a complete zip archive"
    else:
        md5 = "0" * 32
        match = "has MD5 .*, expected 0{32}"
    with pytest.raises(ValueError, match=match):
        beir.download("tiny", str(tmp_path / "data"), url=archive.as_uri(), md5=md5)
    assert os.listdir(tmp_path / "data") == []  # no half-written folder


@pytest.mark.parametrize("member", ["tiny/../../escaped.txt", "/tmp/absolute.txt", "link"])
def test_a_zip_whose_member_leaves_the_target_is_refused_before_anything_is_written(tmp_path, member):
    from jaxneg.data import beir

    if member == "link":
        archive = _zip(tmp_path / "tiny.zip", {"tiny/corpus.jsonl": "{}"}, links=[("tiny/qrels", "/etc")])
    else:
        archive = _dataset_zip(tmp_path, **{member: "x"})
    with pytest.raises(ValueError, match="refusing the archive: member"):
        beir.download("tiny", str(tmp_path / "data"), url=archive.as_uri(), md5=None)
    assert os.listdir(tmp_path / "data") == [] and not (tmp_path / "escaped.txt").exists()
    assert not os.path.exists("/tmp/absolute.txt")
