"""Loaders of mvdata shard directories: DALI (GPU or CPU) and webdataset + torch DataLoader.

Both return :class:`~mvdata.loaders.batch.MultiviewBatch`; :func:`~mvdata.loaders.factory.make_loader`
picks the backend. Everything a loader
needs from the directory is checked before any worker starts (:func:`~mvdata.loaders.dataset.open_dataset`): a directory
that is not an mvdata shard directory, or one written with another schema major version, is a
``ValueError`` naming the file.

Contract shared by the backends:

* **Steps.** Every rank takes exactly ``len(loader)`` steps per epoch, the same on every rank
  (computed from ``sizes.json``, checked across ranks at start when ``torch.distributed`` is up).
  Rows that carry no sample (the end of a rank's share) are padding: ``valid=False``.
* **Exactly once.** Unless a sample is skipped as bad input, every sample appears in exactly one
  valid row per epoch across all ranks (with ``exclude_folds``: every sample of the other folds,
  and none of those folds').
* **Shuffle.** The build already shuffled samples globally (recorded seed). In training the
  loaders add a per-epoch permutation of the *shard order* derived from ``(seed, epoch)`` only
  (:func:`~mvdata.loaders.dataset.shard_order`), so any rank can build any epoch without history, plus a buffer shuffle of
  decoded-free bytes. Eval (``train=False``) reads shards in sorted order, unshuffled.
* **Bad input.** See each backend (and the README's "Bad input" table): missing members are
  logged with shard and key, counted and skipped by both; a sample with a corrupt member (one
  that does not decode to the stored size and mode) is logged with shard, key and member, counted
  (``loader.errors``) and left out by both — webdataset drops it in its decoder, DALI masks its
  row (``valid=False``) after restarting its pipeline from the last checkpoint with the member
  pointed elsewhere (:mod:`mvdata.loaders.dali.quarantine`), so the step count never changes.
  Only data errors are treated so; anything else (a bug, out of memory) is raised. webdataset
  counts the samples a broken tar did not yield against ``sizes.json`` and stops past
  ``max_bad_fraction``; what :func:`~mvdata.loaders.dataset.open_dataset` can check cheaply
  (files that are not regular files, root files that disagree with each other or with the
  first sample, shards without samples: left out) is checked before anything starts.

Modules: :mod:`~mvdata.loaders.options` (settings), :mod:`~mvdata.loaders.dataset` (the shard
directory, steps, shard order), :mod:`~mvdata.loaders.batch` (the batch), :mod:`~mvdata.loaders.base`
(what the backends share), :mod:`~mvdata.loaders.wds`, :mod:`~mvdata.loaders.dali` (graph, loader,
quarantine), :mod:`~mvdata.loaders.factory`, :mod:`~mvdata.loaders.subset` (folds left out). No submodule imports this package's ``__init__``.
"""

from mvdata.loaders.batch import LoaderDataError, MultiviewBatch
from mvdata.loaders.dataset import (
    DatasetInfo,
    check_same_steps,
    open_dataset,
    shard_order,
    steps_per_epoch,
)
from mvdata.loaders.factory import Loader, benchmark, dali_available, make_loader
from mvdata.loaders.options import Backend, LoaderOptions
from mvdata.loaders.subset import without_folds

__all__ = [
    "Backend",
    "DatasetInfo",
    "Loader",
    "LoaderDataError",
    "LoaderOptions",
    "MultiviewBatch",
    "benchmark",
    "check_same_steps",
    "dali_available",
    "make_loader",
    "open_dataset",
    "shard_order",
    "steps_per_epoch",
    "without_folds",
]
