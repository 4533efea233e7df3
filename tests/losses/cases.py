"""Random inputs and (pure jaxneg loss, NumPy reference) pairs shared by the loss tests.

A case is ``build(rng, b, d) -> Case``: ``fn(*inputs, **overrides)`` is a pure function
of the float inputs (so it can be differentiated), ``ref(*inputs)`` the float64
per-anchor reference.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Tuple

import numpy as np

from jaxneg import losses as L
from tests import reference as R


class Case(NamedTuple):
    fn: Callable
    ref: Callable
    inputs: Tuple[np.ndarray, ...]


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def labels_with_repeats(rng, b):
    """Few classes so that every label structure (singletons, pairs, big groups) occurs."""
    return rng.integers(0, max(1, b // 2), size=b).astype(np.int32)


def with_duplicates(x):
    """Copy a few rows onto others (exact duplicates are the classic NaN trigger)."""
    x = x.copy()
    b = x.shape[0]
    if b >= 3:
        x[b - 1] = x[0]
        x[b // 2] = x[1]
    return x


def case_infonce(rng, b, d, *, symmetric=False, use_labels=False, neg=None, margin=0.0, t=0.1, use_mask=False):
    labels = labels_with_repeats(rng, b) if use_labels else None
    inputs = [rand(rng, b, d), rand(rng, b, d)]
    if neg == "shared":
        inputs.append(rand(rng, 5, d))
    elif neg == "per_query":
        inputs.append(rand(rng, b, 3, d))
    mask = None
    if use_mask:  # a pairwise false-negative mask (e.g. GISTEmbed's), never on the diagonal
        mask = (rng.random((b, b + (5 if neg == "shared" else 0))) < 0.3) & ~np.eye(b, b + (5 if neg == "shared" else 0), dtype=bool)
    kw = dict(temperature=t, symmetric=symmetric, labels=labels, margin=margin, mask=mask)

    def fn(q, k, negatives=None, **o):
        return L.infonce(q, k, negatives=negatives, **{**kw, **o})

    def ref(q, k, negatives=None):
        return R.infonce(q, k, t, symmetric, labels, negatives, margin, mask=mask)

    return Case(fn, ref, tuple(inputs))


def case_ntxent(rng, b, d, t=0.2, bank=False):
    if not bank:
        return Case(lambda z1, z2, **o: L.ntxent(z1, z2, temperature=t, **o),
                    lambda z1, z2: R.ntxent(z1, z2, t), (rand(rng, b, d), rand(rng, b, d)))
    # a memory bank of 5 slots (one of them padding) and a random pair mask (e.g. subsampled negatives)
    nm = np.array([True, True, False, True, True])
    mask = rng.random((2 * b, 2 * b + 5)) < 0.4
    return Case(lambda z1, z2, neg, **o: L.ntxent(z1, z2, temperature=t, negatives=neg, negatives_mask=nm, mask=mask, **o),
                lambda z1, z2, neg: R.ntxent(z1, z2, t, neg, nm, mask), (rand(rng, b, d), rand(rng, b, d), rand(rng, 5, d)))


def case_decoupled(rng, b, d, t=0.1, sigma=None):
    return Case(lambda z1, z2, **o: L.decoupled(z1, z2, temperature=t, weight_sigma=sigma, **o),
                lambda z1, z2: R.decoupled(z1, z2, t, sigma), (rand(rng, b, d), rand(rng, b, d)))


def case_debiased(rng, b, d, t=0.5, tau_plus=0.1):
    return Case(lambda z1, z2, **o: L.debiased(z1, z2, temperature=t, tau_plus=tau_plus, **o),
                lambda z1, z2: R.debiased(z1, z2, t, tau_plus), (rand(rng, b, d), rand(rng, b, d)))


def case_hard_negative(rng, b, d, t=0.5, tau_plus=0.1, beta=1.0):
    return Case(lambda z1, z2, **o: L.hard_negative(z1, z2, temperature=t, tau_plus=tau_plus, beta=beta, **o),
                lambda z1, z2: R.hard_negative(z1, z2, t, tau_plus, beta), (rand(rng, b, d), rand(rng, b, d)))


def case_supcon(rng, b, d, v=2, use_labels=True, t=0.1, bt=0.07):
    labels = labels_with_repeats(rng, b) if use_labels else None
    return Case(lambda f, **o: L.supcon(f, labels, temperature=t, base_temperature=bt, **o),
                lambda f: R.supcon(f, labels, t, bt), (rand(rng, b, v, d),))


def case_siglip(rng, b, d, scale=10.0, bias=-10.0, use_labels=False):
    labels = labels_with_repeats(rng, b) if use_labels else None
    return Case(lambda q, k, **o: L.siglip(q, k, logit_scale=scale, logit_bias=bias, labels=labels, **o),
                lambda q, k: R.siglip(q, k, scale, bias, labels), (rand(rng, b, d), rand(rng, b, d)))


STREAMING_CASES = {
    "infonce": case_infonce,
    "infonce_symmetric": lambda rng, b, d: case_infonce(rng, b, d, symmetric=True),
    "infonce_labels": lambda rng, b, d: case_infonce(rng, b, d, use_labels=True, symmetric=True),
    "infonce_shared_negatives": lambda rng, b, d: case_infonce(rng, b, d, neg="shared", symmetric=True),
    "infonce_per_query_negatives": lambda rng, b, d: case_infonce(rng, b, d, neg="per_query"),
    "infonce_margin": lambda rng, b, d: case_infonce(rng, b, d, margin=0.3, use_labels=True),
    "infonce_pair_mask": lambda rng, b, d: case_infonce(rng, b, d, neg="shared", symmetric=True, use_mask=True),
    "ntxent": case_ntxent,
    "ntxent_bank_mask": lambda rng, b, d: case_ntxent(rng, b, d, bank=True),
    "decoupled": case_decoupled,
    "decoupled_weighted": lambda rng, b, d: case_decoupled(rng, b, d, sigma=0.5),
    "debiased": case_debiased,
    "debiased_cold": lambda rng, b, d: case_debiased(rng, b, d, t=0.05, tau_plus=0.2),
    "hard_negative": case_hard_negative,
    "hard_negative_beta3": lambda rng, b, d: case_hard_negative(rng, b, d, beta=3.0, t=0.2),
    "supcon": case_supcon,
    "supcon_unsupervised_3views": lambda rng, b, d: case_supcon(rng, b, d, v=3, use_labels=False),
    "siglip": case_siglip,
    "siglip_labels": lambda rng, b, d: case_siglip(rng, b, d, scale=5.0, bias=-2.0, use_labels=True),
}
