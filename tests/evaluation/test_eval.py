"""Evaluation metrics against NumPy float64 references."""

import jax
import numpy as np
import pytest

from jaxneg import evaluation


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_accuracy_matches_a_brute_force_weighted_vote():
    rng = np.random.default_rng(0)
    tr, te = rng.standard_normal((120, 8)), rng.standard_normal((40, 8))
    ytr, yte = rng.integers(0, 4, 120), rng.integers(0, 4, 40)
    k, t = 7, 0.1
    s = _unit(te) @ _unit(tr).T
    pred = []
    for row in s:
        top = np.argsort(-row, kind="stable")[:k]
        votes = np.zeros(4)
        np.add.at(votes, ytr[top], np.exp(row[top] / t))
        pred.append(np.argmax(votes))
    want = np.mean(np.asarray(pred) == yte)
    got = evaluation.knn_accuracy(tr.astype(np.float32), ytr, te.astype(np.float32), yte, k=k, temperature=t)
    assert got == pytest.approx(want)


def test_linear_probe_separates_separable_classes_and_not_noise():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    x = rng.standard_normal((300, 10)).astype(np.float32)
    x[:, 0] += 4.0 * y
    assert evaluation.linear_probe(x[:200], y[:200], x[200:], y[200:])["test_accuracy"] > 0.9
    noise = rng.standard_normal((300, 10)).astype(np.float32)
    assert evaluation.linear_probe(noise[:200], y[:200], noise[200:], y[200:])["test_accuracy"] < 0.55


def test_retrieval_metrics_match_a_reference_with_duplicate_groups():
    rng = np.random.default_rng(2)
    corpus = rng.standard_normal((50, 6))
    group = np.arange(50)
    group[[7, 9]] = 3  # documents 3, 7 and 9 form one group
    qg = rng.integers(0, 50, 20)
    qg[qg == 7] = 3
    qg[qg == 9] = 3
    q = corpus[qg] + 0.8 * rng.standard_normal((20, 6))
    got = evaluation.retrieval_metrics(q.astype(np.float32), corpus.astype(np.float32), qg, group, ks=(1, 5))
    order = np.argsort(-(_unit(q) @ _unit(corpus).T), axis=1, kind="stable")
    rel = group[order] == qg[:, None]
    nrel = np.array([np.sum(group == g) for g in qg])
    for k in (1, 5):
        assert got[f"recall@{k}"] == pytest.approx(np.mean(rel[:, :k].sum(1) / nrel))
        assert got[f"hit@{k}"] == pytest.approx(np.mean(rel[:, :k].any(1)))
        dcg = (rel[:, :k] / np.log2(np.arange(2, k + 2))).sum(1)
        idcg = np.array([np.sum(1 / np.log2(np.arange(2, min(k, r) + 2))) for r in nrel])
        assert got[f"ndcg@{k}"] == pytest.approx(np.mean(dcg / idcg))
    for k in (1, 5):
        first = np.array([np.argmax(r[:k]) + 1 if r[:k].any() else np.inf for r in rel])
        assert got[f"mrr@{k}"] == pytest.approx(np.mean(1 / first))


def test_contrastive_accuracy_is_one_for_matched_pairs_and_chance_for_noise():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    assert evaluation.contrastive_accuracy(jax.random.key(0), x, x, num_candidates=8) == 1.0
    y = rng.standard_normal((400, 16)).astype(np.float32)
    assert abs(evaluation.contrastive_accuracy(jax.random.key(0), x, y, num_candidates=8) - 1 / 8) < 0.05
    with pytest.raises(ValueError, match="num_candidates"):
        evaluation.contrastive_accuracy(jax.random.key(0), x, y, num_candidates=401)


def test_tolerance_is_the_mean_same_class_cosine():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    y[-1] = 17  # a class with a single member contributes no pair
    u = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    sims = [u[i] @ u[j] for i in range(50) for j in range(50) if i != j and y[i] == y[j]]
    np.testing.assert_allclose(float(evaluation.tolerance(x, y)), np.mean(sims), rtol=1e-5, atol=1e-6)
    assert float(evaluation.tolerance(np.ones((4, 3)), [0, 0, 1, 1])) == pytest.approx(1.0)
    assert np.isnan(float(evaluation.tolerance(x[:3], [0, 1, 2])))
    with pytest.raises(ValueError, match=r"labels must be integer \[N\] = \[50\]"):
        evaluation.tolerance(x, y[:10])


def test_bm25_scores_a_tiny_corpus_as_computed_by_hand():
    """Lucene's BM25 (k1 = 1.5, b = 0.75; without Robertson's constant factor k1 + 1, which leaves every
    ranking as it is) written out term by term; padding (0) is not a word."""
    docs = np.array([[1, 2, 3, 0], [1, 1, 4, 0], [5, 0, 0, 0], [2, 3, 6, 6]])
    queries = np.array([[1, 4], [6, 2], [4, 4]])
    n, length = 4, np.array([3, 3, 1, 4])
    avgdl = length.mean()

    def score(q, d):
        total = 0.0
        for t in q:  # every occurrence of a query word counts
            tf = np.sum(docs[d] == t)
            df = np.sum([(docs[j] == t).any() for j in range(n)])
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            total += idf * tf / (tf + 1.5 * (1 - 0.75 + 0.75 * length[d] / avgdl))
        return total

    want = np.array([[score(q, d) for d in range(n)] for q in queries])
    idx, got = evaluation.bm25(queries, docs, k=4)
    np.testing.assert_allclose(got, np.take_along_axis(want, idx, 1), rtol=1e-5)
    np.testing.assert_allclose(np.sort(want, 1)[:, ::-1], got, rtol=1e-5)  # best first
    assert idx[0, 0] == 1 and idx[1, 0] == 3  # d1 holds 1 twice and 4; d3 holds 6 twice and 2
    m = evaluation.ranking_metrics(idx, np.array([1, 3, 1]), np.arange(4), ks=(1, 4))
    assert m["recall@1"] == 1.0 and m["mrr@4"] == 1.0
    with pytest.raises(ValueError, match="k=5 exceeds the 4 documents"):
        evaluation.bm25(queries, docs, k=5)
    with pytest.raises(ValueError, match=r"docs must be text \(a sequence of str\) or int token ids \[n, L\]"):
        evaluation.bm25(queries, docs.astype(float), k=2)
    with pytest.raises(ValueError, match="ranked has 1 columns, need max"):
        evaluation.ranking_metrics(idx[:, :1], np.array([1, 3, 1]), np.arange(4), ks=(1, 4))


def test_knn_refuses_too_few_classes_and_votes_ties_by_share_not_by_row_order():
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 1, 2, 1, 0, 1, 2])
    x = rng.standard_normal((8, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="num_classes=2 but the labels go up to 2; need num_classes >= 3"):
        evaluation.knn_accuracy(x, y, x, y, k=3, num_classes=2)
    with pytest.raises(ValueError, match="num_classes=2 but the labels go up to 2"):
        evaluation.linear_probe(x, y, x, y, num_classes=2)
    # collapsed features: every similarity ties, each training point votes k / N, and the majority class wins
    # in any row order (it was the first k rows' classes)
    same = np.ones((8, 4), np.float32) + 1e-7 * rng.standard_normal((8, 4)).astype(np.float32)
    for perm in (np.arange(8), rng.permutation(8), rng.permutation(8)):
        acc = evaluation.knn_accuracy(same[perm], y[perm], same[:3], np.array([1, 1, 0]), k=3)
        assert acc == pytest.approx(2 / 3)  # class 1 (4 of 8) predicted for all three
    # distinct features: the top-k vote as before (each point's nearest neighbour is itself)
    assert evaluation.knn_accuracy(x, y, x, y, k=1) == 1.0
