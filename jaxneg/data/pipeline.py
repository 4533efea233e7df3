"""Loading a tfds split into memory and the step-indexed, resumable batch order."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import Mapping

import numpy as np

from jaxneg.data.builders import BUILDERS

#: the fields a split may carry, and the name the rest of the pipeline uses for each
_RENAME = {"image": "x"}


@dataclasses.dataclass(frozen=True)
class Data:
    """One split in host memory: ``arrays[field][i]`` is example ``i``.

    ``num_classes`` is the label's class count when the split has a ``label``; ``name``,
    ``split`` and ``config`` say where it came from.
    """

    name: str
    split: str
    arrays: Mapping[str, np.ndarray]
    num_classes: int | None = None
    config: Mapping | None = None

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def take(self, indices) -> dict:
        """``{field: array[indices]}`` for a NumPy index array."""
        return {k: v[indices] for k, v in self.arrays.items()}


def in_id_order(split: Data, field: str) -> Data:
    """``split`` with its rows in the order of ``field``, so that row ``i`` holds id ``i``.

    A stored split's row order is not its ids' order: tfds shuffles on write unless a builder
    sets ``disable_shuffling`` (and a user's dataset may come in any order), so an id is never
    a row number without this one mapping. Every task that addresses rows by an id (the pairs
    task's ``doc_id``) loads that split through it.

    Raises ``ValueError`` naming the split and field when ``field`` is missing, not integer, or
    not a permutation of ``0..N-1`` (with the first missing and repeated ids).
    """
    where = f"dataset {split.name!r} split {split.split!r}"
    if field not in split.arrays:
        raise ValueError(f"{where} has no id field {field!r} (fields: {sorted(split.arrays)})")
    ids = np.asarray(split.arrays[field])
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"{where}: id field {field!r} must be 1-D integers, got {ids.dtype} {list(ids.shape)}")
    n = len(ids)
    counts = np.bincount(ids[(ids >= 0) & (ids < n)], minlength=n)
    if ids.min() < 0 or ids.max() >= n or np.any(counts != 1):
        out = ids[(ids < 0) | (ids >= n)]
        raise ValueError(
            f"{where}: id field {field!r} must be a permutation of 0..{n - 1} (one row per id); "
            f"{int(np.sum(counts == 0))} ids missing (first {np.flatnonzero(counts == 0)[:5].tolist()}), "
            f"{int(np.sum(counts > 1))} repeated (first {np.flatnonzero(counts > 1)[:5].tolist()}), "
            f"{len(out)} out of range (first {out[:5].tolist()})")
    if np.array_equal(ids, np.arange(n)):
        return split
    return dataclasses.replace(split, arrays=split.take(np.argsort(ids, kind="stable")))


def check_ids(split: Data, field: str, target: Data) -> None:
    """Check that every ``split.arrays[field]`` addresses a row of ``target`` (ids ``0..len(target)-1``)."""
    if field not in split.arrays:
        raise ValueError(f"dataset {split.name!r} split {split.split!r} has no id field {field!r} "
                         f"(fields: {sorted(split.arrays)})")
    ids = np.asarray(split.arrays[field])
    bad = ids[(ids < 0) | (ids >= len(target))]
    if len(bad):
        raise ValueError(f"dataset {split.name!r} split {split.split!r}: {len(bad)} {field} values address no row "
                         f"of split {target.split!r} ({len(target)} rows; first {bad[:5].tolist()})")


def default_data_dir(name: str | None = None) -> str:
    """Where prepared datasets live.

    ``$JAXNEG_DATA_DIR`` when set. Otherwise the embedded (locally generated) datasets go to
    ``$XDG_CACHE_HOME/jaxneg/datasets`` (``~/.cache/jaxneg/datasets``), apart from any real
    tfds data, and every other tfds dataset (``name`` not embedded, or ``None``) to tfds'
    own default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``), where a user's downloads are.
    """
    if os.environ.get("JAXNEG_DATA_DIR"):
        return os.environ["JAXNEG_DATA_DIR"]
    if name is not None and name.split("/")[0].split(":")[0] in BUILDERS:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(cache, "jaxneg", "datasets")
    import tensorflow_datasets as tfds

    return tfds.core.constants.DATA_DIR


@contextlib.contextmanager
def _quiet_tfds():
    """tfds' absl warnings about our own builder configs say nothing a user can act on: hide them."""
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


def _generate(builder, name: str, config) -> None:
    """Prepare an embedded dataset, saying so in one line instead of tfds' "Downloading and preparing"."""
    import io
    import sys

    what = f"{name}" + (f" ({', '.join(f'{k}={v}' for k, v in sorted(dict(config).items()))})" if config else "")
    print(f"generating {what} locally into {builder.data_dir} (once; no download)", file=sys.stderr, flush=True)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            builder.download_and_prepare()
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise


#: a BEIR-format folder (``data_dir``), read by :mod:`jaxneg.data.beir` (not through tfds)
BEIR = "beir"


def dataset_names() -> list[str]:
    """The embedded datasets and ``beir`` (any other tfds name is also accepted by :func:`load`)."""
    return sorted([*BUILDERS, BEIR])


def check_name(name: str) -> str:
    """Fail early, listing the valid names, if ``name`` is neither embedded, ``beir``, nor a tfds builder."""
    import tensorflow_datasets as tfds

    base = name.split("/")[0].split(":")[0]
    if base in BUILDERS or name == BEIR:
        return name
    if base not in tfds.list_builders(with_community_datasets=False):
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(dataset_names())} "
                         f"or any tensorflow-datasets builder name (tfds.list_builders())")
    return name


def builder_config(name: str, config: Mapping | None):
    """The ``BuilderConfig`` of an embedded dataset for the overrides in ``config`` (None: the default)."""
    _, cls = BUILDERS[name]
    config = dict(config or {})
    if cls is None:
        if config:
            raise ValueError(f"dataset {name!r} takes no builder config, got {sorted(config)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    own = [f for f in fields if f not in ("name", "version", "release_notes", "supported_versions",
                                          "description", "tags")]
    unknown = sorted(set(config) - set(own))
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown config field(s) {unknown}; valid: {sorted(own)}")
    values = {f: config.get(f, fields[f].default) for f in own}
    # the config name encodes every non-default value, so each variant has its own directory
    changed = [f"{f}={values[f]}" for f in own if values[f] != fields[f].default]
    return cls(name="-".join(changed).replace(".", "p"), **values) if changed else None


def load(name: str, split: str, *, data_dir: str | None = None, config: Mapping | None = None,
         max_examples: int | None = None) -> Data:
    """Prepare (once, as array_record files) and load one split of a tfds dataset into memory.

    Args:
      name: an embedded dataset (``mnist1d``, ``sklearn_digits``, ``synthetic_retrieval``),
        ``beir`` (a BEIR-format folder given as ``data_dir``, :mod:`jaxneg.data.beir`; ``config``:
        the hashing tokenizer's ``vocab_size``, ``doc_len``, ``query_len``) or any
        tensorflow-datasets name (``cifar10``, ``stl10``, ...; downloaded by tfds on first use, as
        tfds always does for them).
      split: a tfds split (``"train"``, ``"test"``, ``"corpus"``, ``"train[:10%]"``, ...).
      data_dir: where the prepared files live (default :func:`default_data_dir` of ``name``).
      config: builder-config overrides of an embedded dataset, e.g. ``{"num_samples": 20000}``.
      max_examples: keep only the first ``max_examples`` examples.

    Returns:
      :class:`Data`; an ``image`` field is renamed ``x`` (kept as stored, e.g. uint8).
    """
    import tensorflow_datasets as tfds

    check_name(name)
    if name == BEIR:
        from jaxneg.data import beir

        arrays = beir.load(data_dir, split, **dict(config or {}))
        if max_examples is not None:
            arrays = {k: v[:int(max_examples)] for k, v in arrays.items()}
        return Data(name=name, split=split, arrays=arrays, config=dict(config or {}))
    data_dir = data_dir or default_data_dir(name)
    kwargs = {"file_format": "array_record"}
    if name in BUILDERS:
        cls, _ = BUILDERS[name]
        cfg = builder_config(name, config)
        with _quiet_tfds():  # "Using custom data configuration", "Variant folder ... has no dataset_info.json"
            builder = cls(data_dir=data_dir, config=cfg, file_format="array_record") if cfg else cls(
                data_dir=data_dir, file_format="array_record")
            if not builder.is_prepared():
                _generate(builder, name, config)
            source = builder.as_data_source(split=split)
            info = builder.info
    else:
        if config:
            kwargs["config"] = config
        source = tfds.data_source(name, split=split, data_dir=data_dir, builder_kwargs=kwargs)
        info = getattr(source, "dataset_info", None)
    n = len(source)
    if max_examples is not None:
        n = min(n, int(max_examples))
    if n == 0:
        raise ValueError(f"dataset {name!r} split {split!r} is empty")
    try:
        rows = source.__getitems__(list(range(n)))
    except (AttributeError, TypeError):  # sources without batched reads (e.g. tfds' mock_data)
        rows = [source[i] for i in range(n)]
    arrays = {_RENAME.get(k, k): np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]
              if np.asarray(rows[0][k]).dtype.kind in "biuf"}
    num_classes = None
    try:
        num_classes = int(info.features["label"].num_classes)
    except (AttributeError, KeyError, TypeError):
        if "label" in arrays:
            num_classes = int(arrays["label"].max()) + 1
    return Data(name=name, split=split, arrays=arrays, num_classes=num_classes, config=dict(config or {}))


@functools.lru_cache(maxsize=8)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, n]).permutation(n)


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
    """The example indices of batch ``step``: a pure function of ``(seed, step)``.

    The stream is the concatenation of per-epoch permutations ``perm_e`` (seeded by
    ``(seed, e, num_examples)``); batch ``s`` is positions ``[s*B, (s+1)*B)`` of it, so every
    epoch visits each example once, a batch may straddle two epochs, and a run resumed
    at step ``s`` sees exactly the batches an uninterrupted run sees.
    """
    if num_examples < 1 or batch_size < 1 or step < 0:
        raise ValueError(f"batch_indices: need num_examples >= 1, batch_size >= 1, step >= 0, got "
                         f"{num_examples}, {batch_size}, {step}")
    pos = step * batch_size + np.arange(batch_size, dtype=np.int64)
    epoch, offset = pos // num_examples, pos % num_examples
    out = np.empty(batch_size, np.int64)
    for e in np.unique(epoch):
        sel = epoch == e
        out[sel] = _permutation(int(seed), int(e), int(num_examples))[offset[sel]]
    return out
