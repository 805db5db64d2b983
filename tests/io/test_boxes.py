"""Box rules the readers own: zero-size boxes, the clip tolerance, the group-of rule."""

import numpy as np
import pytest

from oi_models.io import boxes
from oi_models.io import readers

HEADER = "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf"


def _read(tmp_path, rows, **kwargs):
  path = tmp_path / "b.csv"
  path.write_text("\n".join([HEADER] + [f"{i:016x},/m/a,{r}" for i, r in enumerate(rows)]) + "\n")
  report = readers.ReadReport()
  return readers.read_boxes(path, report=report, **kwargs), report


def test_zero_size_boxes_are_kept_and_inverted_ones_skipped(tmp_path):
  table, report = _read(tmp_path, ["0.5,0.5,0.1,0.2,0", "0.1,0.2,0.7,0.7,0", "0,0,1,1,0",
                                   "0.5,0.4999,0.1,0.2,0", "0.1,0.2,0.7,0.6999,0"])
  np.testing.assert_array_equal(table.image_id, [0, 1, 2])
  assert report.skipped == {"inverted box": 2}


@pytest.mark.parametrize("coordinate_dtype", [np.float32, np.float64])
def test_clip_tolerance_is_one_thousandth(tmp_path, coordinate_dtype):
  # Within 1e-3 of [0, 1]: clipped and counted; 2e-3 out: skipped, on either side.
  table, report = _read(tmp_path, ["-0.0009,0.5,0.1,1.0009,0", "0.1,0.5,0.1,1.002,0",
                                   "-0.002,0.5,0.1,0.2,0", "0.1,1.0002,0.1,0.2,0"],
                        coordinate_dtype=coordinate_dtype)
  np.testing.assert_array_equal(table.image_id, [0, 3])
  as_read = lambda *values: np.asarray(values, coordinate_dtype)
  np.testing.assert_array_equal(table.xmin, as_read(0, 0.1))
  np.testing.assert_array_equal(table.ymax, as_read(1, 0.2))
  np.testing.assert_array_equal(table.xmax, as_read(0.5, 1))
  assert report.skipped == {"coordinate outside [0, 1]": 2}
  assert sum(report.adjusted.values()) == 3


def test_group_of_rule_counts_unknown_and_a_file_without_the_column_has_none(tmp_path):
  np.testing.assert_array_equal(boxes.is_group_of(np.asarray([-1, 0, 1], np.int8)),
                                [True, False, True])
  table, _ = _read(tmp_path, ["0,1,0,1,-1", "0,1,0,1,0", "0,1,0,1,1", "0,1,0,1,"])
  np.testing.assert_array_equal(table.is_group_of, [-1, 0, 1, -1])
  np.testing.assert_array_equal(readers.is_group_of(table.is_group_of), [True, False, True, True])
  path = tmp_path / "v3.csv"
  path.write_text("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax\n"
                  "000002b66c9c498e,activemil,/m/0284d,1,0.560250,0.951487,0.696401,1.000000\n")
  v3 = readers.read_boxes(path)
  np.testing.assert_array_equal(v3.is_group_of, [0])
  np.testing.assert_array_equal(v3.is_occluded, [-1])
