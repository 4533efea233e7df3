"""Data: tfds builders for the embedded datasets, in-memory splits, resumable order, views.

::

    from jaxneg import data
    train = data.load("mnist1d", "train", config={"num_samples": 20000})
    idx = data.batch_indices(seed=0, step=s, num_examples=len(train), batch_size=256)
    v1, v2 = data.two_views(key, train.take(idx)["x"], "signal")

Embedded datasets are generated locally (:mod:`jaxneg.data.builders`); any other
tensorflow-datasets name (``cifar10``, ``stl10``, ...) goes through the same
:func:`load` on a machine where tfds can prepare it.
"""

from jaxneg.data import beir
from jaxneg.data.builders import (BUILDERS, Mnist1d, Mnist1dConfig, SklearnDigits, SyntheticRetrieval,
                                  SyntheticRetrievalConfig, generate_retrieval, mnist1d_templates)
from jaxneg.data.pipeline import (Data, batch_indices, check_ids, check_name, dataset_names, default_data_dir,
                                  in_id_order, load)
from jaxneg.data.views import VIEWS, identity_view, image_view, signal_view, two_views

__all__ = ["BUILDERS", "Data", "beir", "Mnist1d", "Mnist1dConfig", "SklearnDigits", "SyntheticRetrieval",
           "SyntheticRetrievalConfig", "VIEWS", "batch_indices", "check_ids", "check_name", "dataset_names",
           "default_data_dir", "generate_retrieval", "identity_view", "mnist1d_templates", "image_view", "in_id_order", "load", "signal_view",
           "two_views"]
