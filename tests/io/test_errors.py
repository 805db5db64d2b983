"""The one annotation-file error: where it points, and that readers re-export it."""

import pytest

from oi_models.io import errors
from oi_models.io import readers


def test_message_names_file_line_and_field():
  error = errors.AnnotationError("boxes.csv", 7, "XMin", "not a number")
  assert (error.path, error.line, error.field) == ("boxes.csv", 7, "XMin")
  assert str(error) == "boxes.csv:7: field 'XMin': not a number"
  assert str(errors.AnnotationError("b.csv", None, "file", "empty")) == "b.csv: field 'file': empty"


def test_readers_raise_the_shared_class(tmp_path):
  assert readers.AnnotationError is errors.AnnotationError
  path = tmp_path / "empty.csv"
  path.write_text("")
  with pytest.raises(errors.AnnotationError):
    readers.read_boxes(path)
