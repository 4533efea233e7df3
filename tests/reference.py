"""Independent float64 NumPy references, written as directly as the papers / official code.

Nothing here imports jaxneg: these are plain loops and matrix formulas to compare against.
"""

from __future__ import annotations

import numpy as np


def norm(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def lse(x):
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return -np.inf
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


def infonce(q, k, t, symmetric=False, labels=None, negatives=None, margin=0.0, normalize=True, mask=None,
            negatives_mask=None):
    q = norm(q) if normalize else np.asarray(q, np.float64)
    k = norm(k) if normalize else np.asarray(k, np.float64)
    b = q.shape[0]
    extra_shared = extra_per = None
    if negatives is not None:
        n = np.asarray(negatives, np.float64)
        n = norm(n) if normalize else n
        extra_shared, extra_per = (n, None) if n.ndim == 2 else (None, n)
    labels = np.arange(b) if labels is None else np.asarray(labels)
    n_shared = 0 if extra_shared is None else extra_shared.shape[0]
    mask = np.zeros((b, b + n_shared), bool) if mask is None else np.asarray(mask)
    keep = None if negatives_mask is None else np.asarray(negatives_mask, bool)

    def one(a, c, drop, per=None, shared=None):
        out = []
        for i in range(b):
            pos = (a[i] @ c[i] - margin) / t
            terms = [pos]
            for j in range(b):
                if j != i and labels[j] != labels[i] and not drop[i, j]:
                    terms.append(a[i] @ c[j] / t)
            if shared is not None:
                terms += [shared[s] @ a[i] / t for s in range(n_shared)
                          if not drop[i, b + s] and (keep is None or keep[s])]
            if per is not None:
                terms += [per[i, m] @ a[i] / t for m in range(per.shape[1]) if keep is None or keep[i, m]]
            out.append(lse(terms) - pos)
        return np.array(out)

    l = one(q, k, mask, extra_per, extra_shared)
    if symmetric:
        l = 0.5 * (l + one(k, q, mask[:, :b].T))
    return l


def ntxent(z1, z2, t, negatives=None, negatives_mask=None, mask=None):
    """NT-Xent; ``negatives [M, D]`` join every anchor's sum unless ``negatives_mask[m]`` is False or
    ``mask[i, j]`` (columns: the 2B views, then the M negatives) drops the pair."""
    z = norm(np.concatenate([z1, z2]))
    n = z.shape[0]
    b = n // 2
    cols = z if negatives is None else np.concatenate([z, norm(negatives)])
    sim = z @ cols.T / t
    out = []
    for i in range(n):
        p = (i + b) % n
        keep = [j for j in range(cols.shape[0]) if j not in (i, p)
                and (j < n or negatives_mask is None or negatives_mask[j - n])
                and (mask is None or not mask[i, j])]
        out.append(-sim[i, p] + lse([sim[i, p]] + [sim[i, j] for j in keep]))
    return np.array(out)


def _simclr_exp_terms(z1, z2, t):
    """Official-code setup: exp-domain negatives [2B, 2B-2] and positives [2B]."""
    out_1, out_2 = norm(z1), norm(z2)
    b = out_1.shape[0]
    out = np.concatenate([out_1, out_2])
    neg = np.exp(out @ out.T / t)
    mask = np.ones((b, 2 * b), bool)
    for i in range(b):
        mask[i, i] = mask[i, i + b] = False
    mask = np.concatenate([mask, mask])
    neg = neg[mask].reshape(2 * b, -1)
    pos = np.exp(np.sum(out_1 * out_2, -1) / t)
    return neg, np.concatenate([pos, pos]), 2 * b - 2


def _debiased_from(neg_sum, pos, n, t, tau_plus):
    ng = (-tau_plus * n * pos + neg_sum) / (1 - tau_plus)
    ng = np.maximum(ng, n * np.e ** (-1 / t))
    return -np.log(pos / (pos + ng))


def debiased(z1, z2, t, tau_plus):
    """Port of Chuang et al.'s official ``criterion`` in float64 (exp domain)."""
    neg, pos, n = _simclr_exp_terms(z1, z2, t)
    return _debiased_from(neg.sum(-1), pos, n, t, tau_plus)


def hard_negative(z1, z2, t, tau_plus, beta):
    """Port of Robinson et al.'s official HCL criterion in float64."""
    neg, pos, n = _simclr_exp_terms(z1, z2, t)
    imp = np.exp(beta * np.log(neg))
    reweight_neg = (imp * neg).sum(-1) / imp.mean(-1)
    return _debiased_from(reweight_neg, pos, n, t, tau_plus)


def decoupled(z1, z2, t, sigma=None):
    """Port of Yeh et al.'s DCL/DCLW; returns the 2B per-anchor values (z1 anchors first)."""
    z1, z2 = norm(z1), norm(z2)
    b = z1.shape[0]

    def direction(a, c):
        cross = a @ c.T
        pos = -np.diag(cross) / t
        if sigma is not None:
            s = np.sum(a * c, 1) / sigma
            w = 2 - b * np.exp(s - lse(s))
            pos = pos * w
        negsim = np.concatenate([a @ a.T, cross], 1) / t
        out = []
        for i in range(b):
            keep = [j for j in range(2 * b) if j not in (i, i + b)]
            out.append(pos[i] + lse(negsim[i, keep]))
        return np.array(out)

    return np.concatenate([direction(z1, z2), direction(z2, z1)])


def supcon(features, labels, t, base_t):
    """Port of Khosla et al.'s official SupConLoss (contrast_mode='all')."""
    f = norm(features)
    n, v, _ = f.shape
    labels = np.arange(n) if labels is None else np.asarray(labels)
    mask = (labels[:, None] == labels[None, :]).astype(np.float64)
    cf = np.concatenate([f[:, i] for i in range(v)])
    logits = cf @ cf.T / t
    mask = np.tile(mask, (v, v))
    logits_mask = 1 - np.eye(n * v)
    mask = mask * logits_mask
    out = []
    for a in range(n * v):
        denom = lse([logits[a, j] for j in range(n * v) if j != a])
        npos = mask[a].sum()
        if npos == 0:
            out.append(0.0)
            continue
        out.append(-(t / base_t) * sum(mask[a, j] * (logits[a, j] - denom) for j in range(n * v)) / npos)
    return np.array(out)


def siglip(q, k, scale, bias, labels=None):
    q, k = norm(q), norm(k)
    b = q.shape[0]
    labels = np.arange(b) if labels is None else np.asarray(labels)
    z = np.where(labels[:, None] == labels[None, :], 1.0, -1.0)
    x = scale * q @ k.T + bias
    return np.sum(np.logaddexp(0.0, -z * x), axis=1)  # -log sigmoid(zx) = log(1 + e^{-zx})


def soft_target(q, k, targets, t, target_t=None, symmetric=False):
    q, k = norm(q), norm(k)
    x = q @ k.T / t
    tg = np.asarray(targets, np.float64)

    def direction(x, tg):
        if target_t is None:
            p = tg / tg.sum(1, keepdims=True)
        else:
            e = np.exp(tg / target_t - np.max(tg / target_t, 1, keepdims=True))
            p = e / e.sum(1, keepdims=True)
        logp = x - np.array([lse(r) for r in x])[:, None]
        return -np.sum(p * logp, 1)

    out = direction(x, tg)
    return 0.5 * (out + direction(x.T, tg.T)) if symmetric else out


def distances(x, kind):
    x = norm(x)
    b = x.shape[0]
    d = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            if kind == "cosine":
                d[i, j] = 1 - x[i] @ x[j]
            else:
                sq = np.sum((x[i] - x[j]) ** 2)
                d[i, j] = sq if kind == "squared" else np.sqrt(max(sq, 1e-12))
    return d


def triplet(x, labels, margin, mining, kind):
    """Returns the scalar mean as defined in jaxneg.losses.triplet's docstring."""
    d = distances(x, kind)
    labels = np.asarray(labels)
    b = len(labels)
    pos = [[p for p in range(b) if p != a and labels[p] == labels[a]] for a in range(b)]
    neg = [[n for n in range(b) if labels[n] != labels[a]] for a in range(b)]
    if mining == "batch_hard":
        vals = [max(0.0, margin + max(d[a, p] for p in pos[a]) - min(d[a, n] for n in neg[a]))
                for a in range(b) if pos[a] and neg[a]]
        return np.mean(vals) if vals else 0.0
    if mining == "all":
        vals = [margin + d[a, p] - d[a, n] for a in range(b) for p in pos[a] for n in neg[a]]
        active = [v for v in vals if v > 0]
        return np.mean(active) if active else 0.0
    vals = []
    for a in range(b):
        if not neg[a]:
            continue
        for p in pos[a]:
            outside = [d[a, n] for n in neg[a] if d[a, n] > d[a, p]]
            dn = min(outside) if outside else max(d[a, n] for n in neg[a])
            vals.append(max(0.0, margin + d[a, p] - dn))
    return np.mean(vals) if vals else 0.0


def multi_similarity(x, labels, alpha, beta, base, eps):
    """Port of the official MS loss loop (self excluded by index)."""
    x = norm(x)
    labels = np.asarray(labels)
    b = len(labels)
    sim = x @ x.T
    total = 0.0
    for i in range(b):
        pos_ = np.array([sim[i, j] for j in range(b) if j != i and labels[j] == labels[i]])
        neg_ = np.array([sim[i, j] for j in range(b) if labels[j] != labels[i]])
        if len(pos_) == 0 or len(neg_) == 0:
            continue
        neg_pair = neg_[neg_ + eps > np.min(pos_)]
        pos_pair = pos_[pos_ - eps < np.max(neg_)]
        if len(neg_pair) < 1 or len(pos_pair) < 1:
            continue
        pos_loss = 1.0 / alpha * np.log(1 + np.sum(np.exp(-alpha * (pos_pair - base))))
        neg_loss = 1.0 / beta * np.log(1 + np.sum(np.exp(beta * (neg_pair - base))))
        total += pos_loss + neg_loss
    return total / b


def sampled_softmax(q, p, negs, t, log_q=None, pos_log_q=None, pos_ids=None, neg_ids=None):
    q, p, negs = norm(q), norm(p), norm(negs)
    b = q.shape[0]
    out = []
    for i in range(b):
        n_i = negs[i] if negs.ndim == 3 else negs
        o_pos = q[i] @ p[i] / t - (0.0 if pos_log_q is None else pos_log_q[i])
        lq = np.zeros(len(n_i)) if log_q is None else np.broadcast_to(log_q, (b, len(n_i)))[i]
        ids = None if neg_ids is None else np.broadcast_to(neg_ids, (b, len(n_i)))[i]
        terms = [o_pos] + [n_i[k] @ q[i] / t - lq[k] for k in range(len(n_i)) if ids is None or ids[k] != pos_ids[i]]
        out.append(lse(terms) - o_pos)
    return np.array(out)


def bpr(q, p, negs, t=1.0):
    q, p, negs = norm(q), norm(p), norm(negs)
    out = []
    for i in range(q.shape[0]):
        n_i = negs[i] if negs.ndim == 3 else negs
        diffs = [(q[i] @ p[i] - q[i] @ n) / t for n in n_i]
        out.append(np.mean([np.log1p(np.exp(-d)) for d in diffs]))
    return np.array(out)


def alignment(x, y, alpha=2.0):
    x, y = norm(x), norm(y)
    return np.mean(np.linalg.norm(x - y, axis=1) ** alpha)


def uniformity(x, t=2.0):
    x = norm(x)
    n = x.shape[0]
    vals = [-t * np.sum((x[i] - x[j]) ** 2) for i in range(n) for j in range(i + 1, n)]
    return lse(vals) - np.log(len(vals))


def rankme(z, eps=1e-7):
    s = np.linalg.svd(np.asarray(z, np.float64), compute_uv=False)
    p = s / np.sum(s) + eps
    return np.exp(-np.sum(p * np.log(p)))
