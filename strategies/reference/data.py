"""Data sets for reference runs: scikit-learn's shipped digits, and generated blobs.

``load_digits`` reads the 1,797 8x8 handwritten-digit images (UCI optdigits test set, 64
features of 0..16, 10 classes) that ship inside the scikit-learn package: nothing is
downloaded. scikit-learn is used for this data set only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Train and test splits: features (N, F) scaled to about [0, 1], integer labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def features(self) -> int:
        """Input width."""
        return self.x_train.shape[1]

    @property
    def classes(self) -> int:
        """Number of classes."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def astype(self, dtype: type[np.floating]) -> Dataset:
        """The same data with features in ``dtype``."""
        return Dataset(
            self.x_train.astype(dtype), self.y_train, self.x_test.astype(dtype), self.y_test
        )


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Dataset:
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Dataset(x[train], y[train], x[test], y[test])


def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's digits, pixels divided by 16, split at random (seeded) into train/test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits data set needs scikit-learn: pip install scikit-learn"
        ) from exc
    bunch = load_digits()
    return _split(bunch.data / 16.0, bunch.target.astype(np.int64), test_fraction, seed)


def blobs(
    samples: int, features: int, classes: int, seed: int = 0, test_fraction: float = 0.25
) -> Dataset:
    """Gaussian class clusters: centres ~ N(0, I), points = centre + 0.5 N(0, I)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, features))
    labels = rng.integers(0, classes, samples)
    x = centres[labels] + 0.5 * rng.standard_normal((samples, features))
    return _split(x, labels.astype(np.int64), test_fraction, seed)


def epoch_batches(n: int, batch: int, epochs: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of each batch of ``epochs`` passes over ``n`` samples: a seeded shuffle per
    epoch, the last partial batch dropped."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):
            yield order[start : start + batch]
