"""The BEIR-format loader on a folder the test writes: splits, relevance, hashing tokens and clear errors."""

import json
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
    np.testing.assert_array_equal(test.arrays["doc_id"], [0, 1])
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
    for k, v in {**quickstart.retrieval(folder, steps=2, max_k=1), **quickstart.SAMPLERS["hard"],
                 "sampler.num_negatives": 1, "batch_size": 2, "num_devices": 1, "log_every": 1, "checkpoint_every": 2,
                 "eval.ks": (1, 2), "eval.num_candidates": 2, "progress": False}.items():
        set_field(c, k, v)
    result = train.train(c, str(tmp_path / "run"))
    assert result["status"] == "finished" and {"mrr@2", "recall@2", "false_negative_rate"} <= set(result["eval"])
    assert result["eval"]["false_negative_rate"] == 0.0  # (no duplicates known)
    floor = train.baselines(c, [0])
    assert set(floor["raw_input"]) >= {"eval/mrr@1", "eval/recall@2"}  # BM25 on the same tokens
