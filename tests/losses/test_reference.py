"""Every loss against an independent float64 NumPy reference (value, fp32 tolerance)."""

import zlib

import numpy as np
import pytest

from jaxneg import losses as L
from jaxneg import metrics as M
from tests import reference as R
from tests.losses.cases import STREAMING_CASES, case_debiased, labels_with_repeats, rand, with_duplicates

SHAPES = [(1, 3), (2, 4), (16, 8)]
RTOL, ATOL = 2e-5, 2e-6


def _needs_pairs(name, b):
    return name.startswith(("debiased", "hard_negative")) and b < 2


@pytest.mark.parametrize("name", sorted(STREAMING_CASES))
@pytest.mark.parametrize("b,d", SHAPES)
def test_streaming_losses_match_reference(name, b, d):
    if _needs_pairs(name, b):
        pytest.skip("needs B >= 2")
    rng = np.random.default_rng(zlib.crc32(f"{name}-{b}-{d}".encode()))  # stable across processes
    fn, ref, x = STREAMING_CASES[name](rng, b, d)
    want = np.asarray(ref(*x))
    np.testing.assert_allclose(fn(*x, reduction="none"), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(fn(*x), want.mean(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(fn(*x, reduction="sum"), want.sum(), rtol=RTOL, atol=1e-5)


@pytest.mark.parametrize("name", ["infonce_symmetric", "ntxent", "supcon", "debiased", "siglip"])
def test_duplicate_rows_match_reference(name):
    fn, ref, x = STREAMING_CASES[name](np.random.default_rng(7), 6, 5)
    x = [with_duplicates(a) for a in x]
    np.testing.assert_allclose(fn(*x, reduction="none"), ref(*x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("t", [1.0, 0.07, 0.01])
def test_debiased_low_temperature_stays_finite_and_exact(t):
    # The official exp-domain code overflows in fp32 at t=0.01 (e^{100}); ours is log-domain.
    fn, ref, x = case_debiased(np.random.default_rng(0), 8, 6, t=t, tau_plus=0.1)
    np.testing.assert_allclose(fn(*x, reduction="none"), ref(*x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mining", ["batch_hard", "all", "semihard"])
@pytest.mark.parametrize("distance", ["euclidean", "squared", "cosine"])
@pytest.mark.parametrize("b", [2, 7, 12])
def test_triplet(mining, distance, b):
    rng = np.random.default_rng(b)
    x, labels = rand(rng, b, 5), labels_with_repeats(rng, b)
    got = L.triplet(x, labels, margin=0.3, mining=mining, distance=distance)
    np.testing.assert_allclose(got, R.triplet(x, labels, 0.3, mining, distance), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("b", [2, 6, 13])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_multi_similarity(b, eps):
    rng = np.random.default_rng(b)
    x, labels = rand(rng, b, 4), labels_with_repeats(rng, b)
    got = L.multi_similarity(x, labels, alpha=2.0, beta=10.0, base=0.5, epsilon=eps)
    np.testing.assert_allclose(got, R.multi_similarity(x, labels, 2.0, 10.0, 0.5, eps), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("with_q", [False, True])
def test_sampled_softmax(shared, with_q):
    rng = np.random.default_rng(3)
    b, k, d = 6, 4, 5
    q, p = rand(rng, b, d), rand(rng, b, d)
    negs = rand(rng, k, d) if shared else rand(rng, b, k, d)
    log_q = np.log(rng.uniform(0.01, 1.0, size=(k,) if shared else (b, k))) if with_q else None
    pos_log_q = np.log(rng.uniform(0.01, 1.0, size=b)) if with_q else None
    pos_ids = rng.integers(0, 5, size=b).astype(np.int32)
    neg_ids = rng.integers(0, 5, size=(k,) if shared else (b, k)).astype(np.int32)
    for ids in [(None, None), (pos_ids, neg_ids)]:
        got = L.sampled_softmax(q, p, negs, temperature=0.2, log_q=log_q, positive_log_q=pos_log_q,
                                positive_ids=ids[0], negative_ids=ids[1], reduction="none")
        want = R.sampled_softmax(q, p, negs, 0.2, log_q, pos_log_q, *ids)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_sampled_softmax_log_q_corrects_the_logits():
    # Subtracting log Q from each negative logit is the same as scaling its weight by 1/Q.
    rng = np.random.default_rng(4)
    q, p, negs = rand(rng, 3, 4), rand(rng, 3, 4), rand(rng, 3, 2, 4)
    log_q = np.log(np.array([[0.5, 0.25]] * 3))
    got = L.sampled_softmax(q, p, negs, temperature=1.0, log_q=log_q, reduction="none")
    qn, pn, nn = R.norm(q), R.norm(p), R.norm(negs)
    pos = np.sum(qn * pn, 1)
    neg = np.einsum("bd,bkd->bk", qn, nn)
    want = -np.log(np.exp(pos) / (np.exp(pos) + np.sum(np.exp(neg) / np.exp(log_q), 1)))
    np.testing.assert_allclose(got, want, rtol=RTOL)


@pytest.mark.parametrize("neg_shape", ["single", "per_query", "shared"])
def test_bpr(neg_shape):
    rng = np.random.default_rng(5)
    b, d = 5, 4
    q, p = rand(rng, b, d), rand(rng, b, d)
    negs = {"single": rand(rng, b, d), "per_query": rand(rng, b, 3, d), "shared": rand(rng, 4, d)}[neg_shape]
    ref_negs = negs[:, None, :] if neg_shape == "single" else negs
    got = L.bpr(q, p, negs, temperature=0.5, reduction="none")
    np.testing.assert_allclose(got, R.bpr(q, p, ref_negs, 0.5), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("k", [None, 3])
def test_margin_mse(k):
    rng = np.random.default_rng(6)
    shape = (4,) if k is None else (4, k)
    sp, tp = rand(rng, 4), rand(rng, 4)
    sn, tn = rand(rng, *shape), rand(rng, *shape)
    got = L.margin_mse(sp, sn, tp, tn, reduction="none")
    sn2, tn2 = (sn[:, None], tn[:, None]) if k is None else (sn, tn)
    want = np.mean(((sp[:, None] - sn2) - (tp[:, None] - tn2)) ** 2, 1)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("target_t", [None, 0.5])
@pytest.mark.parametrize("symmetric", [False, True])
def test_soft_target(target_t, symmetric):
    rng = np.random.default_rng(8)
    q, k = rand(rng, 5, 4), rand(rng, 5, 4)
    targets = rng.uniform(0.0, 1.0, size=(5, 5)).astype(np.float32)
    got = L.soft_target(q, k, targets, temperature=0.1, target_temperature=target_t, symmetric=symmetric,
                        reduction="none")
    np.testing.assert_allclose(got, R.soft_target(q, k, targets, 0.1, target_t, symmetric), rtol=RTOL, atol=ATOL)


def test_additive_margin_is_infonce_with_margin():
    rng = np.random.default_rng(9)
    q, k = rand(rng, 6, 4), rand(rng, 6, 4)
    got = L.additive_margin(q, k, margin=0.25, temperature=0.05, reduction="none")
    np.testing.assert_allclose(got, R.infonce(q, k, 0.05, margin=0.25), rtol=RTOL, atol=ATOL)


def test_known_identities():
    rng = np.random.default_rng(10)
    z1, z2 = rand(rng, 7, 5), rand(rng, 7, 5)
    ntx = L.ntxent(z1, z2, temperature=0.3)
    np.testing.assert_allclose(L.supcon(np.stack([z1, z2], 1), None, temperature=0.3, base_temperature=0.3), ntx,
                               rtol=1e-6)
    np.testing.assert_allclose(L.debiased(z1, z2, temperature=0.3, tau_plus=0.0), ntx, rtol=1e-5)
    np.testing.assert_allclose(L.hard_negative(z1, z2, temperature=0.3, tau_plus=0.1, beta=0.0),
                               L.debiased(z1, z2, temperature=0.3, tau_plus=0.1), rtol=1e-5)
    np.testing.assert_allclose(L.soft_target(z1, z2, np.eye(7, dtype=np.float32), temperature=0.3),
                               L.infonce(z1, z2, temperature=0.3), rtol=1e-5)


@pytest.mark.parametrize("n,d", [(2, 3), (9, 4), (33, 8)])
def test_metrics(n, d):
    rng = np.random.default_rng(n)
    x, y = rand(rng, n, d), rand(rng, n, d)
    np.testing.assert_allclose(M.alignment(x, y), R.alignment(x, y), rtol=RTOL)
    np.testing.assert_allclose(M.alignment(x, y, alpha=3.0), R.alignment(x, y, 3.0), rtol=RTOL)
    np.testing.assert_allclose(M.uniformity(x), R.uniformity(x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(M.uniformity(x, t=1.0, block_size=4), R.uniformity(x, 1.0), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(M.rankme(x), R.rankme(x), rtol=1e-4)


def test_rankme_extremes():
    rng = np.random.default_rng(0)
    rank1 = np.outer(rand(rng, 50), rand(rng, 8))
    np.testing.assert_allclose(M.rankme(rank1), 1.0, atol=1e-3)
    np.testing.assert_allclose(M.rankme(np.eye(8, dtype=np.float32)), 8.0, rtol=1e-4)


@pytest.mark.parametrize("block", [None, 3])
@pytest.mark.parametrize("symmetric", [False, True])
def test_negatives_mask_drops_padded_negatives(block, symmetric):
    """Padding flagged False in ``negatives_mask`` leaves every denominator (shared and per query);
    a row whose negatives are all padding keeps its in-batch negatives; gradients stay finite."""
    import jax

    rng = np.random.default_rng(11)
    q, k = rand(rng, 5, 4), rand(rng, 5, 4)
    per, shared = rand(rng, 5, 3, 4), rand(rng, 6, 4)
    keep_per = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0, 1]], bool)
    keep_shared = np.array([1, 0, 1, 0, 0, 1], bool)
    for neg, keep in ((per, keep_per), (shared, keep_shared)):
        got = L.infonce(q, k, temperature=0.2, negatives=neg, negatives_mask=keep, symmetric=symmetric,
                        block_size=block, reduction="none")
        want = R.infonce(q, k, 0.2, symmetric=symmetric, negatives=neg, negatives_mask=keep)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        # padding is not a negative: the padded rows' values differ from the unmasked loss
        assert not np.allclose(got, L.infonce(q, k, temperature=0.2, negatives=neg, symmetric=symmetric,
                                              reduction="none"))
        g = jax.grad(lambda q, n: L.infonce(q, k, temperature=0.2, negatives=n, negatives_mask=keep,
                                            block_size=block), argnums=(0, 1))(q, neg)
        assert all(np.isfinite(np.asarray(x)).all() for x in g)
    none_kept = np.zeros((5, 3), bool)
    np.testing.assert_allclose(L.infonce(q, k, temperature=0.2, negatives=per, negatives_mask=none_kept),
                               L.infonce(q, k, temperature=0.2), rtol=1e-6)
