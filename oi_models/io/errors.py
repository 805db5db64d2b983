"""The one error for a bad annotation file: class lists, hierarchies, boxes, labels, predictions.

One class, so a caller (a CLI, the builder) catches every malformed Open Images file in one place and
a user always learns where: the file, its physical line (1-based, header = line 1; None when the
problem is the file as a whole) and the field.
"""


class AnnotationError(ValueError):
  """A bad annotation file or row; says which file, line (1-based, header = 1) and field."""

  def __init__(self, path, line: int | None, field: str, message: str):
    self.path, self.line, self.field = str(path), line, field
    where = f"{path}:{line}" if line is not None else str(path)
    super().__init__(f"{where}: field {field!r}: {message}")
