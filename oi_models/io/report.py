"""What a read of an annotation file kept, skipped and changed, and why.

Every reader, the builder and the evaluator add to one `ReadReport`, so a user sees in one place how
many rows each bad-input rule took and a few "file:line: field: message" examples of each.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable

MAX_EXAMPLES = 5


@dataclasses.dataclass
class ReadReport:
  """What a read kept and what it skipped, and why.

  Attributes:
    path: the file read (the first one, when reports are merged).
    rows_read: rows after the header, blank ones included: rows_kept + sum(skipped.values()).
    rows_kept: rows in the returned tables.
    skipped: reason -> rows skipped.
    examples: reason -> the first few "file:line: field: message".
    adjusted: change -> values changed but kept (coordinates clipped into [0, 1]).
  """

  path: str = ""
  rows_read: int = 0
  rows_kept: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: dict = dataclasses.field(default_factory=dict)
  adjusted: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def skip(self, reason: str, count: int, examples: Iterable[str] = ()) -> None:
    self.skipped[reason] += count
    kept = self.examples.setdefault(reason, [])
    kept.extend(list(examples)[:MAX_EXAMPLES - len(kept)])

  def wants_examples(self, reason: str) -> int:
    return MAX_EXAMPLES - len(self.examples.get(reason, ()))

  def merge(self, other: "ReadReport") -> "ReadReport":
    """Adds `other`'s counts and examples to this report; returns self."""
    self.path = self.path or other.path
    self.rows_read += other.rows_read
    self.rows_kept += other.rows_kept
    for reason, count in other.skipped.items():
      self.skip(reason, count, other.examples.get(reason, ()))
    self.adjusted.update(other.adjusted)
    return self

  def to_dict(self) -> dict:
    return {"path": self.path, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
            "skipped": dict(self.skipped),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "adjusted": dict(self.adjusted)}

  def summary(self) -> str:
    lines = [f"{self.path}: read {self.rows_read:,} rows, kept {self.rows_kept:,}, "
             f"skipped {sum(self.skipped.values()):,}"]
    for reason, count in self.skipped.most_common():
      lines.append(f"  skipped {count:,}: {reason}")
      lines += [f"    {example}" for example in self.examples.get(reason, ())]
    for change, count in self.adjusted.most_common():
      lines.append(f"  adjusted {count:,}: {change}")
    return "\n".join(lines)
