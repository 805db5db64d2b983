"""keys.unique / keys.contained equal np.unique / np.isin, empty arrays and the uint64 top bit included."""

import numpy as np
import pytest

from oi_models.evaluation import keys


@pytest.mark.parametrize("size, pool_size", [(0, 0), (0, 5), (5, 0), (1000, 300), (3000, 3000)])
def test_equal_numpy(size, pool_size):
  rng = np.random.default_rng(size + pool_size)
  values = rng.integers(0, 2**64, 500, dtype=np.uint64, endpoint=False)  # top bit set in about half
  queries, pool = values[rng.integers(0, 500, size)], values[rng.integers(0, 400, pool_size)]
  np.testing.assert_array_equal(keys.unique(pool), np.unique(pool))
  np.testing.assert_array_equal(keys.contained(queries, keys.unique(pool)), np.isin(queries, pool))
