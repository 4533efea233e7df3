r"""The pairs task: (query, document) pairs, with optional sampled or mined extra negatives.

Each example is a query (token ids) and the id of its positive document in the corpus
split; the document tower (``config.model.doc_name``, else the query tower) encodes the
corpus rows (or, with ``id_embedding``, the ids themselves). Besides the in-batch
documents, ``config.sampler`` adds negatives:

* ``per_query`` (``uniform``): ``[B, K]`` documents per query, never the query's positive;
* ``shared`` (``popularity``): ``K`` documents for the whole batch, drawn ``∝ count^alpha``,
  with their ``log Q`` for the sampled-softmax correction (Yi et al. 2019);
* ``mined`` (``hard_topk``, ``simans``): from an index of the corpus embeddings, re-encoded
  every ``config.sampler.refresh_every`` steps (ANCE-style asynchronous refresh; Xiong et
  al. 2021); rows with fewer than ``K`` survivors of the filters fall back to uniform draws.

Ids: a query's ``doc_id`` addresses its document's corpus row, and every use (the training
positive, the samplers' exclusions, the mined index, the popularity counts, the evaluation's
pairs) indexes the corpus by it. That holds because the loop loads the corpus in ``doc_id``
order (``Task.corpus_id``: :func:`jaxneg.data.in_id_order`, which fails unless the ids are a
permutation of ``0..N-1``) and checks that every query's ``doc_id`` addresses a row.

Evaluation: retrieval metrics (recall / MRR / nDCG at ``config.eval.ks``) of the test queries
against the whole corpus, RankMe of the corpus embeddings, and pair metrics. Baseline
(:func:`raw_input`): BM25 over the same tokens, scored by the same metrics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments import checks
from experiments.tasks import common
from experiments.tasks.common import (AXIS, Setup, doc_tower, embed, encode_all, eval_key, first_rows,
                                      pair_metrics, process_batch, rankme)
from jaxneg import LOSSES, SAMPLERS, evaluation, models, parallel, samplers
from jaxneg._array import l2_normalize


#: the sampler kinds the pairs task draws with (registry metadata ``train``), and the sampler arguments it
#: sets itself from other fields (never in ``sampler.kwargs``)
TRAINED_SAMPLERS = ("per_query", "shared", "mined")
SAMPLER_RESERVED = ("key", "exclude", "positive_scores", "query", "corpus", "k", "scores", "counts", "shape",
                    "num_items")


def validate(config, loss) -> None:
    """Its own fields: the document tower, the sampler (a trained kind, its keywords, its counts), and with
    a sampler a loss that takes extra negatives."""
    if config.model.doc_name:
        checks.choice("model.doc_name", config.model.doc_name, sorted(models.BACKBONES))
        checks.keyword_arguments("model.doc_kwargs", models.BACKBONES[config.model.doc_name], config.model.doc_kwargs,
                                 ("parent", "name"))
    _validate_sampler(config, loss)
    if config.sampler.name and not loss.extra_negatives:
        raise ValueError(f"config.loss.name={config.loss.name!r} takes no extra negatives; with a sampler use "
                         f"{', '.join(LOSSES.select(extra_negatives=True, inputs=common.TRAINED_INPUTS))}")
    s = config.sampler
    checks.choice("sampler.pool", s.pool, ("corpus", "seen"))
    if s.max_negatives or s.exclude_duplicates:
        if not s.name:
            raise ValueError("config.sampler.max_negatives / exclude_duplicates need a sampler (config.sampler.name)")
    if s.max_negatives:
        if SAMPLERS.info(s.name).train == "shared":
            raise ValueError(f"config.sampler.max_negatives masks each query's negatives; {s.name!r} draws one shared "
                             f"set: use {', '.join(SAMPLERS.select(train=('per_query', 'mined')))}")
        if "negatives_mask" not in loss.keywords:
            raise ValueError(f"config.sampler.max_negatives needs a loss that takes negatives_mask; "
                             f"{config.loss.name!r} does not")
        if not 0 <= s.num_negatives <= s.max_negatives:
            raise ValueError(f"config.sampler.num_negatives={s.num_negatives} must be in [0, sampler.max_negatives="
                             f"{s.max_negatives}]")
        if s.name == "simans" and s.candidates < s.max_negatives:
            raise ValueError("config.sampler.candidates must be >= config.sampler.max_negatives")
    elif s.name and s.num_negatives < 1:
        raise ValueError(f"config.sampler.num_negatives must be >= 1, got {s.num_negatives}")


def _validate_sampler(config, loss) -> None:
    trained = SAMPLERS.select(train=TRAINED_SAMPLERS)
    if config.sampler.name:
        SAMPLERS.info(config.sampler.name)  # unknown names list the valid ones
    checks.choice("sampler.name", config.sampler.name, [""] + trained)
    if loss.inputs == "sampled" and not config.sampler.name:
        raise ValueError(f"config.loss.name={config.loss.name!r} needs sampled negatives: set config.sampler.name "
                         f"(one of {', '.join(trained)})")
    if not config.sampler.name:
        return
    checks.keyword_arguments("sampler.kwargs", SAMPLERS.info(config.sampler.name), config.sampler.kwargs,
                             SAMPLER_RESERVED, optional_only=True)
    checks.positive("sampler.num_negatives", config.sampler.num_negatives, 0)
    checks.positive("sampler.max_negatives", config.sampler.max_negatives, 0)
    checks.positive("sampler.refresh_every", config.sampler.refresh_every)
    if SAMPLERS.info(config.sampler.name).train == "shared" and loss.inputs == "sampled" and "log_q" not in loss.keywords:
        raise ValueError(f"config.sampler.name={config.sampler.name!r} draws shared negatives; "  # bpr: [B, K] only
                         f"{config.loss.name} needs per-query ones ({', '.join(SAMPLERS.select(train=('per_query', 'mined')))})")
    if config.sampler.name == "simans" and config.sampler.candidates < max(config.sampler.num_negatives,
                                                                           config.sampler.max_negatives):
        raise ValueError("config.sampler.candidates must be >= config.sampler.num_negatives")
    if config.gradcache_chunk and config.sampler.name == "popularity":
        raise ValueError("config.gradcache_chunk needs per-example inputs; the popularity sampler's shared "
                         "negatives are not split into chunks (use uniform / hard_topk / simans, or no gradcache)")


def host_batch(setup: Setup, seed: int, step: int) -> dict:
    """This process' share of global batch ``step`` (NumPy), a pure function of (seed, step)."""
    _, b = process_batch(setup, seed, step)
    doc = b["doc_id"] if setup.doc_by_id else setup.corpus.arrays["tokens"][b["doc_id"]]
    return {"q": b["tokens"], "doc": doc, "doc_id": b["doc_id"].astype(np.int32), "group": b["group"].astype(np.int32)}


def example_inputs(setup: Setup):
    b = host_batch(setup, 0, 0)
    return jnp.asarray(b["q"][:1]), jnp.asarray(b["doc"][:1])


def _corpus(setup: Setup):
    n = len(setup.corpus)
    return jnp.arange(n, dtype=jnp.int32) if setup.doc_by_id else jnp.asarray(setup.corpus.arrays["tokens"])


def consts(setup: Setup) -> dict:
    """The corpus inputs and each document's group (duplicates share one); with
    ``sampler.exclude_duplicates`` every document's group members ``[N, G]`` (padded with -1); for the
    popularity sampler the training-set count of each document."""
    groups = np.asarray(setup.corpus.arrays["group"])
    out = {"corpus": _corpus(setup), "groups": jnp.asarray(groups, jnp.int32)}
    if setup.config.sampler.exclude_duplicates:
        out["duplicates"] = jnp.asarray(_members(groups))
    counts = np.bincount(setup.train.arrays["doc_id"], minlength=len(setup.corpus))  # training queries per doc
    if setup.config.sampler.name == "popularity":
        out["counts"] = jnp.asarray(counts.astype(np.float32))
    if setup.config.sampler.name and setup.config.sampler.pool == "seen":
        seen = np.flatnonzero(counts > 0)
        position = np.full(len(setup.corpus), -1, np.int32)
        position[seen] = np.arange(len(seen), dtype=np.int32)
        out["pool"], out["pool_position"] = jnp.asarray(seen, jnp.int32), jnp.asarray(position)
    return out


def _members(groups) -> np.ndarray:
    """``[N, G]`` int32: row ``d`` lists the documents of ``d``'s group (``d`` included), padded with -1."""
    order = np.argsort(groups, kind="stable")
    starts = np.searchsorted(groups[order], groups)
    size = np.bincount(groups)[groups]
    width = int(size.max())
    cols = np.arange(width)
    out = np.where(cols[None, :] < size[:, None], order[np.minimum(starts[:, None] + cols[None, :], len(groups) - 1)], -1)
    return out.astype(np.int32)


def _mined_config(config) -> bool:
    return bool(config.sampler.name) and SAMPLERS.info(config.sampler.name).train == "mined"


def _mined(setup: Setup) -> bool:
    return _mined_config(setup.config)


def _index(setup: Setup, params):
    dm, dp = doc_tower(setup, params)
    return encode_all(dm, dp, np.asarray(_corpus(setup)))[1]


def init_state(setup: Setup, params, key) -> dict:
    """Mined samplers: the index of document embeddings."""
    return {"index": _index(setup, params)} if _mined(setup) else {}


def refresh(setup: Setup, state, step: int):
    """Re-encode the mined index (host side, per member). The loop calls it on the task's schedule,
    ``refresh_every``: every ``config.sampler.refresh_every`` steps with a mined sampler, else never."""
    return dict(state, index=_index(setup, state["params"]))


def depth(config) -> int:
    """The negatives drawn or mined per query, the arrays' shape: ``sampler.max_negatives``, else
    ``sampler.num_negatives``. Members of one program share it; each uses its first ``num_negatives``."""
    return int(config.sampler.max_negatives or config.sampler.num_negatives)


def _sample(setup: Setup, key, state, batch, consts, hp):
    """Negatives for one member's step: ``(document inputs, StepData of the loss' arrays and the diagnostics)``.

    ``depth(config)`` negatives are drawn or mined per query (the largest ``k`` of a program), and a
    member keeps its first ``k = hp.num_negatives`` (traced, ``negatives_mask``): the hardest ``k``
    of the mined, ``k`` of the uniform draws; ``k = 0`` is in-batch negatives only. Never the query's
    positive; with ``sampler.exclude_duplicates`` never a document of its group either (the oracle,
    which knows the planted duplicates). Diagnostic: ``false_negative_rate``, the share of the kept
    negatives from the positive's group (``group``: the duplicates, known on this data).
    """
    c = setup.config
    sampler, skw = c.sampler.name, c.sampler.kwargs.to_dict()
    corpus = consts["corpus"]
    ids = batch["doc_id"]
    b, k = ids.shape[0], depth(c)
    exclude = consts["duplicates"][ids] if c.sampler.exclude_duplicates else ids[:, None]
    # the pool the negatives come from: the whole corpus, or (sampler.pool = "seen") the documents that are
    # some training query's positive; draws and mining index the pool, and map back to corpus rows
    pool = consts.get("pool")
    to_corpus = (lambda i: i) if pool is None else (lambda i: jnp.where(i >= 0, pool[jnp.maximum(i, 0)], -1))  # noqa: E731
    if pool is not None:
        exclude = jnp.where(exclude >= 0, consts["pool_position"][jnp.maximum(exclude, 0)], -1)
    n_pool = corpus.shape[0] if pool is None else pool.shape[0]
    kind = SAMPLERS.info(sampler).train
    extra = common.StepData()
    if kind == "per_query":
        neg = to_corpus(SAMPLERS.get(sampler)(key, n_pool, (b, k), exclude=exclude))
    elif kind == "shared":
        counts = consts["counts"]
        neg, log_q = SAMPLERS.get(sampler)(key, counts, (k,), **skw)
        all_log_q = samplers.popularity_log_q(counts, alpha=skw.get("alpha", 0.75))
        extra = extra._replace(log_q=log_q, positive_log_q=all_log_q[ids], negative_ids=neg)
    else:  # mined from the index of document embeddings
        q = l2_normalize(jax.lax.stop_gradient(embed(setup.query_model, state["params"]["query"], batch["q"])))
        index = l2_normalize(state["index"])
        pos = jnp.sum(q * index[ids], -1)
        if pool is not None:
            index = index[pool]
        mine = k if sampler == "hard_topk" else c.sampler.candidates
        filters = skw if sampler == "hard_topk" else {}
        if filters.get("absolute_margin") is not None or filters.get("relative_margin") is not None:
            filters = dict(filters, positive_scores=pos)
        mined = SAMPLERS.get("hard_topk")(q, index, mine, exclude=exclude, **filters)
        if sampler == "simans":
            pick = SAMPLERS.get("simans")(key, mined.scores, pos, k, **skw)
            neg = to_corpus(jnp.take_along_axis(mined.indices, pick.indices, 1))
            ok = pick.mask & (neg >= 0)
        else:
            neg, ok = to_corpus(mined.indices), mined.mask
        # rows with fewer survivors than k (filters) fall back to uniform draws
        fallback = to_corpus(SAMPLERS.get("uniform")(jax.random.fold_in(key, 1), n_pool, (b, k), exclude=exclude))
        neg = jnp.where(ok, neg, fallback)
    used = jnp.broadcast_to(jnp.arange(k)[None, :] < hp.num_negatives, (b, k))
    if c.sampler.max_negatives:
        extra = extra._replace(negatives_mask=used)
    groups = consts["groups"][neg] if neg.ndim == 2 else jnp.broadcast_to(consts["groups"][neg][None, :], (b, k))
    false = jnp.sum(used & (groups == batch["group"][:, None]))
    diagnostics = {"false_negative_rate": jax.lax.psum(false, AXIS) / jnp.maximum(jax.lax.psum(jnp.sum(used), AXIS), 1)}
    return corpus[neg], extra._replace(diagnostics=diagnostics, negative_groups=groups)


def make_encode(setup: Setup):
    """``encode(enc_params, (queries, docs, negatives or None), key) -> reps``: queries through the
    query tower; documents and the per-query negatives ``[B, K, *doc_shape]`` through the document
    tower (:func:`~experiments.tasks.common.doc_tower`)."""

    def encode(enc, inputs, key):
        a, b, neg = inputs
        k = jax.random.split(key, 3)
        za = embed(setup.query_model, enc["query"], a, k[0])
        dm, dp = doc_tower(setup, enc)
        zb = embed(dm, dp, b, k[1])
        zn = None
        if neg is not None:
            zn = embed(dm, dp, neg.reshape((-1,) + b.shape[1:]), k[2])
            zn = zn.reshape(neg.shape[:2] + zn.shape[-1:])
        return za, zb, zn

    return encode


make_objective = common.make_objective


def inputs(setup: Setup, keys, state, batch, consts, hp) -> common.StepInputs:
    """One member's step inputs (inside ``shard_map``); ``keys = (views, negatives)``."""
    c = setup.config
    a, b, neg, shared = batch["q"], batch["doc"], None, None
    extra = common.StepData(doc_id=batch["doc_id"], labels=batch["group"])
    diagnostics = {}
    if c.sampler.name:
        neg, more = _sample(setup, keys[1], state, batch, consts, hp)
        extra = more._replace(doc_id=extra.doc_id, labels=extra.labels)
        diagnostics = dict(more.diagnostics)
        if SAMPLERS.info(c.sampler.name).train == "shared":  # one set of negatives [K] for the batch
            neg, shared = None, neg
    if c.sampler.mask_batch_duplicates:
        dup = batch_duplicates(batch["group"])
        diagnostics["batch_duplicates"] = jax.lax.pmean(jnp.mean(jnp.any(dup, 1).astype(jnp.float32)), AXIS)
        if "mask" in LOSSES.info(c.loss.name).keywords:
            extra = extra._replace(mask=dup)
    extra = extra._replace(diagnostics=diagnostics or None)
    return common.StepInputs((a, b, neg), extra, shared, None)


def batch_duplicates(groups):
    """``[B, W B]`` bool (inside ``shard_map``): the in-batch documents of every device that belong to a query's
    positive's duplicate group (the same document included: two queries of one document), its own positive
    column excepted. They are the positive again, not negatives: the loss masks them
    (``sampler.mask_batch_duplicates``), whatever the sampler, k = 0 included."""
    everyone = parallel.gather_replicated(groups, AXIS)
    b = groups.shape[0]
    own = jax.lax.axis_index(AXIS) * b + jnp.arange(b)
    return (everyone[None, :] == groups[:, None]) & (jnp.arange(everyone.shape[0])[None, :] != own[:, None])


def after_step(setup: Setup, state, params, extra, hp) -> dict:
    return state


def evaluate(setup: Setup, params) -> dict:
    """Retrieval metrics of the test queries against the corpus (and ``train_<metric>``: of a fixed sample of
    training queries, which shows memorisation), RankMe, and pair metrics."""
    ev = setup.config.eval
    key = eval_key(setup)
    test = first_rows(setup.test, ev.max_examples)
    corpus = setup.corpus.arrays
    dm, dp = doc_tower(setup, params)
    docs = corpus["doc_id"] if setup.doc_by_id else corpus["tokens"]
    _, zc = encode_all(dm, dp, docs)
    _, z1 = encode_all(setup.query_model, params["query"], test["tokens"])
    z2 = zc[test["doc_id"]]  # the corpus is in doc_id order: row = id
    out = dict(evaluation.retrieval_metrics(z1, zc, test["group"], corpus["group"], ks=_ks(setup),
                                            relevant=test.get("relevant"), grades=test.get("grades")))
    # the training queries' own metrics on a fixed sample (the first eval.max_examples): near 1 when the
    # training pairs are memorised, and then in-batch negatives are easy and mined ones cannot help
    seen = first_rows(setup.train, ev.max_examples)
    _, zt = encode_all(setup.query_model, params["query"], seen["tokens"])
    out.update({f"train_{k}": v for k, v in evaluation.retrieval_metrics(
        zt, zc, seen["group"], corpus["group"], ks=_ks(setup), relevant=seen.get("relevant"),
        grades=seen.get("grades")).items()})
    out["rankme"] = float(rankme(zc[: ev.max_examples]))
    out.update(pair_metrics(setup, z1, z2, key))
    return out


def _ks(setup: Setup) -> tuple:
    return tuple(k for k in setup.config.eval.ks if k <= len(setup.corpus)) or (1,)


def raw_input(setup: Setup) -> dict:
    """The lexical baseline of the evaluation: BM25 (:func:`jaxneg.evaluation.bm25`, Lucene, ``eval.bm25_k1``,
    ``eval.bm25_b``) of the test queries against the corpus, with the run's retrieval metrics (``recall@k``,
    ``hit@k``, ``mrr@k``, ``ndcg@k``). On a BEIR folder it reads the raw text (title + text, full length) with
    the field's analyser (English stopwords, Snowball stemmer), as the field's BM25 baselines are computed;
    on a corpus with no text (the synthetic one), the token ids. A dense run that does not beat it has not
    learned more than word overlap. ``method`` (a note for the report) says which, and for a BEIR folder
    the share of documents and queries the dense encoder sees cut (``data.config.doc_len`` / ``query_len``)."""
    c = setup.config
    test = first_rows(setup.test, c.eval.max_examples)
    corpus = setup.corpus.arrays
    ks = _ks(setup)
    k1, b = c.eval.bm25_k1, c.eval.bm25_b
    if c.data.name == "beir":
        from jaxneg.data import beir

        queries = beir.texts(c.data.data_dir, "queries")
        ranked, _ = evaluation.bm25([queries[i] for i in test["query"]], beir.texts(c.data.data_dir, "corpus"),
                                    k=max(ks), k1=k1, b=b)
        tok = {**beir.DEFAULTS, **c.data.config.to_dict()}
        cut = lambda x, n: f"{np.mean(x > n):.1%}"  # noqa: E731
        method = (f"BM25 (bm25s, Lucene, k1 {k1}, b {b}) on the raw text (title + text, full length; "
                  f"{evaluation.TEXT_ANALYSER}). The dense encoder reads hashed words cut to doc_len "
                  f"{tok['doc_len']} ({cut(corpus['length'], tok['doc_len'])} of the documents cut) and query_len "
                  f"{tok['query_len']} ({cut(test['length'], tok['query_len'])} of the test queries cut)")
    elif "tokens" in corpus:
        ranked, _ = evaluation.bm25(test["tokens"], corpus["tokens"], k=max(ks), k1=k1, b=b)
        method = (f"BM25 (bm25s, Lucene, k1 {k1}, b {b}) on the token ids the encoder reads (the corpus has no "
                  f"text: no stopwords, no stemming)")
    else:
        return {}
    return {**evaluation.ranking_metrics(ranked, test["group"], corpus["group"], ks=ks, relevant=test.get("relevant"),
                                         grades=test.get("grades")), "method": method}


def diagnose(setup: Setup, state, extra, hp) -> dict:
    """``embedding_mean_norm``: the length of the mean normalised query embedding of the step (1: collapsed);
    with a softmax loss (a temperature), the regime of the negatives (:func:`negative_regime`)."""
    out = {"embedding_mean_norm": jnp.linalg.norm(common.mean_direction(jax.lax.stop_gradient(extra.embeddings)))}
    if LOSSES.info(setup.config.loss.name).scale == "temperature" and extra.reps is not None:
        out.update(negative_regime(extra, hp))
    return out


def negative_regime(extra, hp) -> dict:
    """How the softmax of the loss spreads over each query's negatives (:func:`common.negative_mass`, at the
    configured temperature): every device's in-batch documents but the query's own (and those
    ``extra.mask`` drops), and the drawn or mined ones it keeps. ``negative_mass_extra``: the share on the
    drawn or mined negatives; ``negative_mass_same_group``: on documents of the positive's duplicate group
    (false negatives, on data that knows them); ``effective_negatives``."""
    za, zb, zn = extra.reps
    q = l2_normalize(za.astype(jnp.float32))
    docs = parallel.gather_replicated(l2_normalize(zb.astype(jnp.float32)), AXIS)
    groups = parallel.gather_replicated(extra.labels, AXIS)
    b = q.shape[0]
    own = jax.lax.axis_index(AXIS) * b + jnp.arange(b)
    cand = jnp.arange(docs.shape[0])[None, :] != own[:, None]
    if extra.mask is not None:
        cand = cand & ~extra.mask
    logits, same, drawn = q @ docs.T, (groups[None, :] == extra.labels[:, None]), jnp.zeros_like(cand)
    if zn is not None:
        zn = l2_normalize(zn.astype(jnp.float32))
        extra_logits = q @ zn.T if zn.ndim == 2 else jnp.einsum("bd,bkd->bk", q, zn)
        keep = extra.negatives_mask if extra.negatives_mask is not None else jnp.ones(extra_logits.shape, bool)
        logits = jnp.concatenate([logits, extra_logits], 1)
        cand = jnp.concatenate([cand, keep], 1)
        same = jnp.concatenate([same, extra.negative_groups == extra.labels[:, None]], 1)
        drawn = jnp.concatenate([drawn, jnp.ones_like(keep)], 1)
    return common.negative_mass(logits / hp.temperature, cand, {"extra": drawn, "same_group": same})


#: the pairs task's own config fields (``config_lib.base_config`` adds them), with their defaults
CONFIG = {
    "data.corpus_split": "corpus",   # the documents
    "model.doc_name": "",            # a second tower for documents ("" = the query tower encodes them too)
    "model.doc_kwargs": {},
    "sampler.name": "",              # extra negatives: a name of jaxneg.SAMPLERS (uniform, popularity, hard_topk,
                                     # simans); "" = in-batch documents only
    "sampler.num_negatives": 0,      # per query (uniform, hard_topk, simans) or shared (popularity)
    "sampler.max_negatives": 0,      # > 0: draw / mine this many per query and keep the first num_negatives
                                     # (0 to max): members with different num_negatives share one program
    "sampler.exclude_duplicates": False,  # never mine or draw a document of the positive's group (the oracle:
                                          # it knows the planted duplicates)
    "sampler.pool": "corpus",        # where drawn and mined negatives come from: "corpus" (every document, the
                                     # test queries' targets included, as ANCE mines) or "seen" (the documents
                                     # that are some training query's positive)
    "sampler.mask_batch_duplicates": True,  # in-batch documents of the positive's group (two queries of one
                                            # document, planted duplicates) are no negatives (losses with `mask`)
    "sampler.refresh_every": 100,    # hard_topk / simans: re-encode the corpus index every n steps
    "sampler.candidates": 64,        # simans: sample among the top-n mined
    "sampler.kwargs": {},            # the sampler's keyword arguments
    "eval.bm25_k1": 1.5,             # the lexical baseline's BM25 parameters (Lucene's defaults)
    "eval.bm25_b": 0.75,
}
MEMBERS = (common.MemberField("sampler.num_negatives", "num_negatives", np.int32),)  # of max_negatives: one program


def shape_key(config) -> dict:
    """The negatives' shape: ``depth``."""
    return {"sampler.depth": config.sampler.max_negatives or config.sampler.num_negatives}


TASK = common.register(common.Task(
    name="pairs", needs=lambda config: ("tokens", "doc_id", "group"), corpus_id="doc_id", validate=validate,
    host_batch=host_batch, example_inputs=example_inputs, consts=consts, init_state=init_state,
    make_encode=make_encode, make_objective=make_objective, inputs=inputs, after_step=after_step,
    evaluate=evaluate, refresh=refresh, raw_input=raw_input, diagnose=diagnose, vmap_on_cpu=True,
    config=CONFIG, members=MEMBERS, shape_key=shape_key,
    refresh_every=lambda config: config.sampler.refresh_every if _mined_config(config) else 0))
