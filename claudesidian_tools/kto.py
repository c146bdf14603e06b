"""KTO helpers: loss weights in TRL's recommended range and a mixed-label batch sampler.

Nothing here imports torch: the sampler follows torch's batch-sampler protocol (``__iter__`` yields
lists of indices, ``__len__`` counts them, ``set_epoch`` reseeds) and plugs into
``DataLoader(batch_sampler=...)`` as it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

import claudesidian_synthetic as cs


def _labels_of(dataset_or_labels) -> list[bool]:
    """Labels of a Dataset (its "label" column) or of any iterable of booleans."""
    column_names = getattr(dataset_or_labels, "column_names", None)
    labels = dataset_or_labels["label"] if column_names is not None else dataset_or_labels
    labels = list(labels)
    for label in labels:
        if not isinstance(label, bool):
            raise cs.OptionError(f"labels must be booleans (True = desirable), found {label!r}")
    return labels


def kto_weights(dataset_or_labels) -> dict[str, float]:
    """`desirable_weight` and `undesirable_weight` for TRL's KTOConfig: the majority keeps 1.0 and the
    minority is up-weighted so the weighted ratio sits at the bottom of Eq. 8's range (just above 1).

    >>> kto_weights([True, True, True, False])
    {'desirable_weight': 1.0, 'undesirable_weight': 3.0}
    """
    labels = _labels_of(dataset_or_labels)
    return weights_for_counts(sum(labels), len(labels) - sum(labels))


def weights_for_counts(n_desirable: int, n_undesirable: int) -> dict[str, float]:
    """`kto_weights` from the two label counts (what a one-pass count over a large split gives)."""
    if n_desirable == 0 or n_undesirable == 0:
        raise cs.OptionError(
            f"KTO weights need both labels: got {n_desirable} desirable and {n_undesirable} undesirable rows"
        )
    # Rounded to 4 decimals in the direction that keeps the weighted ratio at or above 1.
    if n_desirable >= n_undesirable:
        return {"desirable_weight": 1.0, "undesirable_weight": math.floor(n_desirable / n_undesirable * 1e4) / 1e4}
    return {"desirable_weight": math.ceil(n_undesirable / n_desirable * 1e4) / 1e4, "undesirable_weight": 1.0}


class MixedLabelBatchSampler:
    """Batches of indices in which every complete batch holds both labels; a fresh order each epoch.

    Every index appears once per epoch. Use it as ``DataLoader(dataset, batch_sampler=sampler)`` or from
    a trainer's ``get_train_dataloader``. With ``drop_last=False`` the last, shorter batch is kept.

    >>> labels = [True, True, True, False, False, True]
    >>> sampler = MixedLabelBatchSampler(labels, batch_size=3, seed=0)
    >>> [sorted(labels[index] for index in batch) for batch in sampler]
    [[False, True, True], [False, True, True]]
    >>> len(sampler)
    2
    """

    def __init__(self, labels: Iterable[bool], batch_size: int, seed: int = 42, drop_last: bool = False):
        self.labels = _labels_of(labels)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise cs.OptionError(f"batch_size={batch_size!r}: must be a positive whole number")
        self.batch_size, self.seed, self.drop_last, self.epoch = batch_size, seed, drop_last, 0
        # Fail here, not in the middle of training, when no mixed order exists.
        self._order(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self, epoch: int) -> list[int]:
        return cs.mixed_order(self.labels, self.batch_size, cs.random_stream(self.seed, "sampler_epoch", epoch))

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order(self.epoch)
        stop = len(self) * self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.labels) // self.batch_size
        return math.ceil(len(self.labels) / self.batch_size)


def homogeneous_batches(labels: Sequence[bool], batch_size: int) -> int:
    """How many complete, aligned batches of `batch_size` consecutive rows hold a single label."""
    complete = len(labels) // batch_size * batch_size
    per_batch = np.asarray(labels[:complete], dtype=bool).reshape(-1, batch_size).sum(axis=1)
    return int(np.count_nonzero((per_batch == 0) | (per_batch == batch_size)))
