"""Orders in which training reads examples: class-aware sampling and plain shuffling.

Open Images is long-tailed: a few classes sit on hundreds of thousands of images, hundreds of classes on
fewer than a thousand. Class-aware sampling draws a class uniformly, then one of that class's images
uniformly, so every class is seen about equally often; mmdetection reports +8 to +10 box AP on Open Images
from it. The plain order (a fresh permutation per epoch) is here too, with the same interface.

Samplers are numpy only and produce example *indices*; a pipeline reads the examples by index from a
random-access source (`oi_models.dataloaders.examples`). An epoch's sequence is a pure function of (seed,
epoch): runs are reproducible, epochs differ, and a resumed job continues the same stream. With several
workers every worker computes the same global sequence and keeps positions `worker_index`,
`worker_index + num_workers`, ...: the workers' streams are disjoint slices of one stream, equally long,
and together they are exactly the single-worker stream (so class balance holds globally, not per shard).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class ImageClasses:
  """The classes present in each image, in CSR form (row i = the distinct classes of image i).

  Attributes:
    offsets: int64 [num_images + 1]; image i's classes are `classes[offsets[i]:offsets[i + 1]]`.
    classes: int64, sorted and distinct within each row.
  """

  offsets: np.ndarray
  classes: np.ndarray

  @classmethod
  def from_pairs(cls, image_index, class_index, num_images: int) -> "ImageClasses":
    """From parallel arrays (one entry per annotation: a box or a label); duplicates are merged.

    Images without any pair get an empty row; `num_images` is the dataset's length.
    """
    image_index = np.asarray(image_index, dtype=np.int64)
    class_index = np.asarray(class_index, dtype=np.int64)
    if image_index.shape != class_index.shape or image_index.ndim != 1:
      raise ValueError(f"image_index {image_index.shape} and class_index {class_index.shape} must be "
                       "1-D and of one length")
    if image_index.size and (image_index.min() < 0 or image_index.max() >= num_images):
      raise ValueError(f"image indices must lie in [0, {num_images}); got {image_index.min()}.."
                       f"{image_index.max()}")
    if class_index.size and class_index.min() < 0:
      raise ValueError(f"class indices must be >= 0; got {class_index.min()}")
    pairs = np.unique(np.stack([image_index, class_index], axis=1), axis=0)  # sorted by image, class
    counts = np.bincount(pairs[:, 0], minlength=num_images)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return cls(offsets, pairs[:, 1].copy())

  @classmethod
  def from_lists(cls, lists: Sequence[Sequence[int]]) -> "ImageClasses":
    """From one sequence of class indices per image (as read from the dataset's `objects/label`)."""
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    image_index = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
    class_index = (np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
                   if lengths.sum() else np.zeros(0, np.int64))
    return cls.from_pairs(image_index, class_index, len(lists))

  @property
  def num_images(self) -> int:
    return len(self.offsets) - 1

  def images_per_class(self, num_classes: int | None = None) -> np.ndarray:
    """Number of images holding each class."""
    return np.bincount(self.classes, minlength=num_classes or 0)


class Sampler:
  """Common part: per-epoch global sequences, cut into equal disjoint worker slices."""

  def __init__(self, global_epoch_size: int, seed: int, num_workers: int, worker_index: int):
    if num_workers < 1 or not 0 <= worker_index < num_workers:
      raise ValueError(f"need 0 <= worker_index < num_workers; got {worker_index}, {num_workers}")
    if global_epoch_size < 1:
      raise ValueError(f"epoch size must be positive; got {global_epoch_size}")
    self.seed = int(seed)
    self.num_workers = num_workers
    self.worker_index = worker_index
    # Every worker gets the same number of examples per epoch (synchronous training needs it).
    self.epoch_size = -(-global_epoch_size // num_workers)

  def __len__(self) -> int:
    """Examples per epoch for this worker."""
    return self.epoch_size

  def _rng(self, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch)]))

  def global_epoch(self, epoch: int) -> np.ndarray:
    """All workers' indices for `epoch`, length `epoch_size * num_workers`."""
    raise NotImplementedError

  def epoch(self, epoch: int) -> np.ndarray:
    """This worker's example indices (int64) for `epoch`."""
    return self.global_epoch(int(epoch))[self.worker_index::self.num_workers]

  def epochs(self, start_epoch: int = 0) -> Iterator[np.ndarray]:
    """This worker's epochs from `start_epoch` on, without end."""
    epoch = start_epoch
    while True:
      yield self.epoch(epoch)
      epoch += 1


class ShuffleSampler(Sampler):
  """A fresh uniform permutation of all images every epoch.

  When `num_workers` does not divide the number of images, the permutation is extended by its own first
  entries so every worker gets `ceil(n / num_workers)` indices; every image is read at least once per
  epoch.
  """

  def __init__(self, num_images: int, seed: int = 0, num_workers: int = 1, worker_index: int = 0):
    super().__init__(num_images, seed, num_workers, worker_index)
    self.num_images = num_images

  def global_epoch(self, epoch: int) -> np.ndarray:
    order = self._rng(epoch).permutation(self.num_images)
    total = self.epoch_size * self.num_workers
    return np.resize(order, total).astype(np.int64)  # np.resize repeats from the start.


class ClassAwareSampler(Sampler):
  """Draws a class uniformly among classes with at least one image, then one of its images uniformly.

  Draws are independent (with replacement), so an image with several classes can come up through any of
  them. Classes with no image are left out of the draw (they cannot be sampled); `classes` lists the
  ones that take part. The epoch length defaults to the number of images.
  """

  def __init__(self, image_classes: ImageClasses, seed: int = 0, num_workers: int = 1,
               worker_index: int = 0, epoch_size: int | None = None):
    super().__init__(epoch_size or image_classes.num_images, seed, num_workers, worker_index)
    image_of_entry = np.repeat(np.arange(image_classes.num_images, dtype=np.int64),
                               np.diff(image_classes.offsets))
    order = np.argsort(image_classes.classes, kind="stable")
    sorted_classes = image_classes.classes[order]
    # Class -> images CSR over the classes that occur.
    self.classes, starts, counts = np.unique(sorted_classes, return_index=True, return_counts=True)
    if not self.classes.size:
      raise ValueError("no image has a class: nothing to sample")
    self._starts = starts.astype(np.int64)
    self._counts = counts.astype(np.int64)
    self._images = image_of_entry[order]

  def global_epoch(self, epoch: int) -> np.ndarray:
    rng = self._rng(epoch)
    total = self.epoch_size * self.num_workers
    which = rng.integers(0, len(self.classes), size=total)
    position = rng.integers(0, self._counts[which])  # Uniform within each draw's own class.
    return self._images[self._starts[which] + position]
