"""Arrays read from their buffers equal pyarrow's own conversion, on slices and with nulls."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from oi_models.io import arrow_arrays
from oi_models.io import image_ids

_RNG = np.random.default_rng(0)


def _slices(array):
  """The array and slices of it that start and end off byte and word boundaries."""
  return [array, array.slice(3), array.slice(5, 17), array.slice(len(array), 0)]


@pytest.mark.parametrize("type_", [pa.int8(), pa.int32(), pa.int64(), pa.float32(), pa.float64(),
                                   pa.uint64(), pa.bool_()])
def test_values_and_masks_equal_pyarrow(type_):
  data = _RNG.integers(-1, 2, 40)
  nulls = _RNG.random(40) < 0.3
  python = [None if null else (bool(v) if type_ == pa.bool_() else abs(int(v)))
            for v, null in zip(data, nulls)]
  for array in _slices(pa.array(python, type_)):
    fill = False if type_ == pa.bool_() else 7
    expected = np.asarray([fill if v is None else v for v in array.to_pylist()],
                          array.type.to_pandas_dtype())
    got = arrow_arrays.values(array, fill)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    null = np.asarray([v is None for v in array.to_pylist()], bool)
    assert np.array_equal(arrow_arrays.null_mask(array), null)
    assert np.array_equal(arrow_arrays.valid(array), ~null)


def test_values_without_a_fill_refuse_nulls():
  with pytest.raises(ValueError, match="1 nulls"):
    arrow_arrays.values(pa.array([1, None], pa.int32()))


def test_column_keys_on_slices_with_nulls_and_bad_lengths():
  keys = _RNG.integers(0, 2**64, 30, dtype=np.uint64, endpoint=False)
  ids = list(image_ids.key_to_image_id(keys))
  ids[4], ids[9], ids[11], ids[20] = None, ids[9][:15], ids[11] + "0", ids[20].upper()
  ids[25] = "0123456789abcdeg"
  for array in _slices(pa.array(ids, pa.string())):
    got, bad = image_ids.column_keys(array)
    values = array.to_pylist()
    expected_bad = []
    for i, value in enumerate(values):
      try:
        expected = image_ids.image_id_to_key(value)
      except (ValueError, TypeError):
        expected_bad.append(True)
        continue
      expected_bad.append(False)
      assert got[i] == expected, (i, value)
    assert bad.tolist() == expected_bad
    dictionary_keys, dictionary_bad = image_ids.column_keys(array.dictionary_encode())
    assert np.array_equal(dictionary_bad, bad)
    assert np.array_equal(dictionary_keys[~bad], got[~bad])


@pytest.mark.parametrize("run_length", [1, 2, 8])
def test_column_keys_of_sorted_runs_equal_one_by_one(run_length):
  # Sorted files hold runs of equal IDs, decoded once per run; a bad ID inside a run, runs that
  # differ in one character only, and runs of one (more distinct IDs than half) must all agree
  # with decoding each ID alone.
  keys = np.sort(_RNG.integers(0, 2**64, 40, dtype=np.uint64, endpoint=False))
  ids = list(image_ids.key_to_image_id(np.repeat(keys, run_length)))
  ids[5 * run_length:6 * run_length] = [ids[5 * run_length][:15] + "f"] * run_length
  ids[6 * run_length:7 * run_length] = [ids[5 * run_length][:15] + "e"] * run_length
  ids[10 * run_length] = "0123456789abcdeg"
  for array in _slices(pa.array(ids, pa.string())):
    got, bad = image_ids.column_keys(array)
    for i, value in enumerate(array.to_pylist()):
      if value == "0123456789abcdeg":
        assert bad[i]
      else:
        assert not bad[i] and got[i] == image_ids.image_id_to_key(value), (i, value)


def test_reading_boxes_does_not_import_pandas(tmp_path):
  path = tmp_path / "boxes.csv"
  path.write_text("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,"
                  "IsTruncated,IsGroupOf,IsDepiction,IsInside\n"
                  "000000000000000a,xclick,/m/a,1,0.1,0.2,0.3,0.4,0,1,,0,0\n"
                  "000000000000000b,xclick,/m/a,,0.1,0.2,0.3,0.4,0,0,0,0,0,extra\n")
  code = ("import sys; from oi_models.io import readers; "
          f"groups = list(readers.iter_image_groups({str(path)!r}, report=readers.ReadReport())); "
          "print(len(groups), 'pandas' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.split() == ["1", "False"]
