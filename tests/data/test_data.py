"""Embedded tfds builders, the mock_data path for real tfds names, the resumable order and views."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxneg import data


def test_mnist1d_size_is_configurable_and_generation_is_deterministic():
    small = data.load("mnist1d", "train", config={"num_samples": 1000})
    test = data.load("mnist1d", "test", config={"num_samples": 1000})
    assert small.arrays["x"].shape == (800, 40) and small.arrays["x"].dtype == np.float32
    assert len(test) == 200 and small.num_classes == 10
    assert set(np.unique(small.arrays["label"])) == set(range(10))
    again = data.load("mnist1d", "train", config={"num_samples": 1000})
    np.testing.assert_array_equal(np.sort(small.arrays["x"], 0), np.sort(again.arrays["x"], 0))
    other = data.load("mnist1d", "train", config={"num_samples": 1000, "seed": 7})
    assert not np.allclose(np.sort(small.arrays["x"], 0), np.sort(other.arrays["x"], 0))
    state = np.random.get_state()[1].copy()
    data.load("mnist1d", "train", config={"num_samples": 500, "seed": 3})  # generating must not reseed NumPy
    np.testing.assert_array_equal(state, np.random.get_state()[1])


def test_mnist1d_with_more_classes_keeps_the_digits_and_spaces_the_generated_templates():
    from mnist1d.data import get_templates

    t = data.mnist1d_templates(40)
    assert t["x"].shape == (40, 12) and list(t["y"]) == list(range(40))
    np.testing.assert_array_equal(t["x"][:10], get_templates()["x"])  # the package's digits come first
    gap = np.sqrt(((t["x"][:, None] - t["x"][None]) ** 2).sum(-1)) + np.eye(40) * 9
    assert gap.min() >= 0.25  # min_distance
    np.testing.assert_allclose(t["x"][:, 0], 0.0, atol=1e-12)  # each starts at 0, as the digits do
    np.testing.assert_array_equal(t["x"], data.mnist1d_templates(40)["x"])  # a pure function of (C, seed)
    split = data.load("mnist1d", "train", config={"num_samples": 400, "num_classes": 40})
    assert split.num_classes == 40 and set(np.unique(split.arrays["label"])) <= set(range(40))
    assert len(np.unique(split.arrays["label"])) > 30
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        data.mnist1d_templates(1)


def test_sklearn_digits():
    tr, te = data.load("sklearn_digits", "train"), data.load("sklearn_digits", "test")
    assert tr.arrays["x"].shape == (1437, 8, 8, 1) and len(te) == 360
    assert 0.0 <= tr.arrays["x"].min() and tr.arrays["x"].max() <= 1.0


RETRIEVAL = {"num_docs": 600, "num_train_queries": 400, "num_test_queries": 50, "duplicate_rate": 0.25}


def test_synthetic_retrieval_plants_topics_paraphrases_and_duplicates():
    cfg = data.SyntheticRetrievalConfig(name="t", **RETRIEVAL, paraphrase_noise=0.0)
    s = data.generate_retrieval(cfg)
    corpus, train = s["corpus"], s["train"]
    dup = corpus["group"] != corpus["doc_id"]
    assert abs(dup.mean() - 0.25) < 0.06
    # duplicates share their original's topic and signature, and originals are not duplicates
    g = corpus["group"][dup]
    assert np.all(corpus["group"][g] == g)
    np.testing.assert_array_equal(corpus["topic"][dup], corpus["topic"][g])
    np.testing.assert_array_equal(corpus["tokens"][dup, :4], corpus["tokens"][g, :4])
    # without paraphrase noise a query's tokens are its document's, signature first
    doc = corpus["tokens"][train["doc_id"]]
    np.testing.assert_array_equal(train["tokens"][:, :4], doc[:, :4])
    assert all(set(q) <= set(d) for q, d in zip(train["tokens"], doc))
    assert np.all(train["tokens"] > 0)
    noisy = data.generate_retrieval(data.SyntheticRetrievalConfig(name="t", **RETRIEVAL, paraphrase_noise=1.0))
    same = (noisy["train"]["tokens"][:, :4] == noisy["corpus"]["tokens"][noisy["train"]["doc_id"], :4]).mean()
    assert same < 0.2
    skew = data.generate_retrieval(data.SyntheticRetrievalConfig(name="t", **RETRIEVAL, popularity_exponent=1.2))
    counts = np.sort(np.bincount(skew["train"]["doc_id"], minlength=600))[::-1]
    assert counts[:6].sum() > 0.3 * counts.sum()  # Zipf head vs uniform (~1% for the top 6)


def test_synthetic_retrieval_loads_through_tfds_in_generation_order():
    """The embedded builders store their splits unshuffled: the loaded split is the generator's, row for row
    (tfds' default hashed order put doc_id == row in 1 of 4,096 corpus rows)."""
    ref = data.generate_retrieval(data.SyntheticRetrievalConfig(name="t", **RETRIEVAL))
    for split in ("corpus", "test"):
        loaded = data.load("synthetic_retrieval", split, config=RETRIEVAL)
        assert set(loaded.arrays) == set(ref[split])
        for field, values in ref[split].items():
            np.testing.assert_array_equal(loaded.arrays[field], values, err_msg=f"{split}.{field}")
    assert data.builders.VERSION >= tfds.core.Version("1.1.0")  # caches of the shuffled 1.0.0 are not read


def test_in_id_order_puts_any_stored_order_in_id_order_and_rejects_ids_that_are_not_a_permutation():
    rng = np.random.default_rng(0)
    ids = rng.permutation(7)
    split = data.Data("d", "corpus", {"doc_id": ids, "tokens": np.stack([ids * 10, ids * 10 + 1], 1)})
    ordered = data.in_id_order(split, "doc_id")
    np.testing.assert_array_equal(ordered.arrays["doc_id"], np.arange(7))
    np.testing.assert_array_equal(ordered.arrays["tokens"][:, 0], np.arange(7) * 10)  # rows move together
    assert data.in_id_order(ordered, "doc_id") is ordered
    with pytest.raises(ValueError, match=r"split 'corpus' has no id field 'id' \(fields: \['doc_id', 'tokens'\]\)"):
        data.in_id_order(split, "id")
    bad = {"repeated": ([0, 1, 1, 3], r"1 ids missing \(first \[2\]\), 1 repeated \(first \[1\]\)"),
           "out of range": ([0, 1, 2, 9], r"1 ids missing \(first \[3\]\).*1 out of range \(first \[9\]\)"),
           "negative": ([0, -1, 2, 1], r"1 out of range \(first \[-1\]\)")}
    for name, (values, match) in bad.items():
        with pytest.raises(ValueError, match="must be a permutation of 0..3.*" + match):
            data.in_id_order(data.Data("d", "corpus", {"doc_id": np.array(values)}), "doc_id")
    with pytest.raises(ValueError, match="must be 1-D integers"):
        data.in_id_order(data.Data("d", "corpus", {"doc_id": np.arange(4.0)}), "doc_id")
    queries = data.Data("d", "train", {"doc_id": np.array([0, 6, 7])})
    with pytest.raises(ValueError, match=r"1 doc_id values address no row of split 'corpus' \(7 rows; first \[7\]\)"):
        data.check_ids(queries, "doc_id", ordered)


def test_real_tfds_names_go_through_the_same_pipeline_with_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        d = data.load("cifar10", "train")
    assert d.arrays["x"].shape == (12, 32, 32, 3) and d.arrays["x"].dtype == np.uint8
    assert d.num_classes == 10 and d.arrays["label"].shape == (12,)
    v1, _ = data.two_views(jax.random.key(0), jnp.asarray(d.arrays["x"][:4]), "image")
    assert v1.shape == (4, 32, 32, 3) and float(v1.min()) >= 0.0 and float(v1.max()) <= 1.0


def test_bad_names_and_fields_fail_with_the_valid_values():
    with pytest.raises(ValueError, match="mnist1d, sklearn_digits, synthetic_retrieval"):
        data.load("mnist_1d", "train")
    with pytest.raises(ValueError, match="num_samples"):
        data.load("mnist1d", "train", config={"n_samples": 10})


@pytest.mark.parametrize("n,b", [(10, 4), (12, 4), (7, 16)])
def test_batch_order_is_a_pure_function_of_seed_and_step(n, b):
    stream = np.concatenate([data.batch_indices(3, s, n, b) for s in range(6)])
    for e in range(len(stream) // n):  # each epoch visits each example once
        assert sorted(stream[e * n:(e + 1) * n]) == list(range(n))
    np.testing.assert_array_equal(data.batch_indices(3, 4, n, b), stream[4 * b:5 * b])  # resume at step 4
    assert not np.array_equal(stream, np.concatenate([data.batch_indices(4, s, n, b) for s in range(6)]))
    with pytest.raises(ValueError, match="batch_size"):
        data.batch_indices(0, 0, n, 0)


def test_views_are_keyed_and_the_neutral_signal_view_is_the_identity():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 40)), jnp.float32)
    a1, b1 = data.two_views(jax.random.key(1), x, "signal")
    a2, _ = data.two_views(jax.random.key(1), x, "signal")
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, b1)
    same, _ = data.two_views(jax.random.key(1), x, "signal", min_crop=1.0, max_shift=0, scale=0.0, noise=0.0)
    np.testing.assert_allclose(same, x, atol=1e-5)
    img = jnp.asarray(np.random.default_rng(1).random((3, 16, 16, 3)), jnp.float32)
    v, w = data.two_views(jax.random.key(2), img, "image")
    assert v.shape == img.shape and not np.allclose(v, w)
    yy, xx = np.meshgrid(np.linspace(0, 1, 16), np.linspace(0, 1, 16), indexing="ij")
    img = jnp.asarray(np.stack([yy, xx, 0.5 + 0 * xx], -1)[None].repeat(3, 0), jnp.float32)  # smooth
    flat, _ = data.two_views(jax.random.key(2), img, "image", min_area=1.0, strength=0.0, p_jitter=0.0, p_gray=0.0)
    # full-area crop at aspect ~1 with no colour change: the image or its mirror, up to resampling
    err = jnp.minimum(jnp.abs(flat - img).mean((1, 2, 3)), jnp.abs(flat - img[:, :, ::-1]).mean((1, 2, 3)))
    assert float(err.max()) < 0.05
    with pytest.raises(ValueError, match="'image', 'signal'"):
        data.two_views(jax.random.key(0), x, "sigmal")


def test_embedded_data_is_generated_under_a_documented_directory(tmp_path, monkeypatch, capfd):
    """No "Downloading and preparing" for locally generated data, and nothing in ~/tensorflow_datasets."""
    import tensorflow_datasets as tfds

    monkeypatch.delenv("JAXNEG_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    where = str(tmp_path / "cache" / "jaxneg" / "datasets")
    assert data.default_data_dir("sklearn_digits") == where
    assert data.default_data_dir("cifar10") == tfds.core.constants.DATA_DIR  # real tfds data stays where tfds keeps it
    capfd.readouterr()
    d = data.load("sklearn_digits", "test")
    out = capfd.readouterr()
    assert len(d) == 360 and os.path.isdir(os.path.join(where, "sklearn_digits"))
    assert f"generating sklearn_digits locally into {where}" in out.err
    assert "Downloading and preparing" not in out.out + out.err and "custom data configuration" not in out.err
    data.load("sklearn_digits", "train")  # prepared once: silent the second time
    assert "generating" not in capfd.readouterr().err


def test_train_and_test_queries_draw_their_aliases_independently():
    """Equal query counts once gave both splits the same alias masks (the seed was the count)."""
    from jaxneg.data.builders import SyntheticRetrievalConfig, generate_retrieval

    c = SyntheticRetrievalConfig(name="t", num_docs=64, num_train_queries=32, num_test_queries=32, alias_rate=0.5,
                                 heldout_docs=0.25)
    out = generate_retrieval(c)
    vocab = int(out["corpus"]["tokens"].max()) + 1  # documents never use an alias
    train, test = out["train"]["tokens"] >= vocab, out["test"]["tokens"] >= vocab
    assert 0.3 < train.mean() < 0.7 and 0.3 < test.mean() < 0.7
    assert (train != test).mean() > 0.3  # independent masks differ in about half of the positions
