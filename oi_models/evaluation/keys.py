"""Set operations on uint64 image keys, by sorting.

NumPy 2.4's `np.unique` (and `np.isin`, which calls it) hashes integer arrays; on uint64 keys spread over
the whole range (ImageID keys, row hashes) that is 10-100x slower than a sort here (1.5M random keys:
9.8 s against 0.09 s; 1.5M keys of 40,000 images: 1.3 s against 0.1 s). Used where such keys meet
millions of ground-truth or prediction rows.
"""

from __future__ import annotations

import numpy as np


def unique(keys: np.ndarray) -> np.ndarray:
  """The distinct values of `keys`, sorted (np.unique's result)."""
  ordered = np.sort(keys)
  if not len(ordered):
    return ordered
  return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]


def contained(queries: np.ndarray, pool_sorted: np.ndarray) -> np.ndarray:
  """queries[i] in pool (np.isin's result), `pool_sorted` sorted; queries searched in sorted order."""
  found = np.zeros(len(queries), bool)
  if not len(pool_sorted) or not len(queries):
    return found
  order = np.argsort(queries)
  at = np.searchsorted(pool_sorted, queries[order]).clip(max=len(pool_sorted) - 1)
  found[order] = pool_sorted[at] == queries[order]
  return found
