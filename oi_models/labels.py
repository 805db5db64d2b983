"""Open Images class lists (LabelMap) and the class hierarchy (Hierarchy).

A `LabelMap` gives every MID a contiguous index (0..N-1) and a display name; models, datasets and
metrics speak in those indices. A `Hierarchy` is the official JSON's is-a graph: a DAG, since a class
may sit under several parents. The expansion rules follow the Open Images Challenge protocol: boxes and
positive image-level labels are copied to every ancestor, verified negatives to every descendant, and
the root ("Entity") never takes part. `Part` entries are kept apart; they are not is-a edges.

Expansion works on numpy index arrays through CSR tables (one row per class listing the class itself
and its ancestors, or itself and its descendants), so tens of millions of rows expand in a few
vectorized operations.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
from typing import Iterable, Mapping, Sequence

import numpy as np

ROOT_MID = "/m/0bl9f"
_MID_RE = re.compile(r"^/[mg]/[0-9a-z_]+$")


class LabelFileError(ValueError):
  """A class list, label map or hierarchy file is malformed; says which file, line and field."""

  def __init__(self, path, line, field, message):
    self.path, self.line, self.field = str(path), line, field
    where = f"{path}:{line}" if line is not None else str(path)
    super().__init__(f"{where}: field {field!r}: {message}")


def is_mid(text: str) -> bool:
  """True for an Open Images / Freebase machine ID such as `/m/01g317` or `/g/11bc5rm8n_`."""
  return bool(_MID_RE.match(text))


def _read_text(path) -> str:
  # utf-8-sig drops a BOM; newline="" keeps CR so the csv module sees CRLF and LF rows alike.
  with open(path, encoding="utf-8-sig", newline="") as f:
    return f.read()


@dataclasses.dataclass(frozen=True)
class LabelMap:
  """MID <-> contiguous index <-> display name.

  Attributes:
    mids: MIDs in index order.
    names: display names in index order.
  """

  mids: tuple[str, ...]
  names: tuple[str, ...]

  def __post_init__(self):
    if len(self.mids) != len(self.names):
      raise ValueError(f"{len(self.mids)} MIDs but {len(self.names)} names")
    index = {}
    for i, mid in enumerate(self.mids):
      if mid in index:
        raise ValueError(f"MID {mid} appears twice (indices {index[mid]} and {i})")
      index[mid] = i
    object.__setattr__(self, "_index", index)

  @classmethod
  def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> "LabelMap":
    mids, names = zip(*pairs) if pairs else ((), ())
    return cls(tuple(mids), tuple(names))

  @classmethod
  def from_csv(cls, path) -> "LabelMap":
    """Reads a class-descriptions CSV (`MID,DisplayName`), with or without a header line.

    Handles CSV quoting (`"Lemon, lime and bitters"`, doubled quotes), CRLF/LF mixed, and a BOM.
    """
    rows = csv.reader(io.StringIO(_read_text(path), newline=""))
    pairs = []
    for line, row in enumerate(rows, start=1):
      if not row or (len(row) == 1 and not row[0].strip()):
        continue
      if line == 1 and not is_mid(row[0].strip()):
        continue  # A header such as `LabelName,DisplayName`.
      if len(row) < 2:
        raise LabelFileError(path, line, "DisplayName", f"missing (row has {len(row)} field)")
      mid = row[0].strip()
      if not is_mid(mid):
        raise LabelFileError(path, line, "LabelName", f"{mid!r} is not a MID")
      pairs.append((mid, ",".join(row[1:]) if len(row) > 2 else row[1]))
    try:
      return cls.from_pairs(pairs)
    except ValueError as e:
      raise LabelFileError(path, None, "LabelName", str(e)) from None

  @classmethod
  def from_pbtxt(cls, path) -> "LabelMap":
    """Reads a TF Object Detection API label map (`item { name: id: display_name: }`), ordered by id."""
    text = _read_text(path)
    items = []
    for match in re.finditer(r"item\s*\{(.*?)\}", text, flags=re.S):
      body = match.group(1)
      line = text.count("\n", 0, match.start()) + 1
      fields = dict(re.findall(r"(\w+)\s*:\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[-\w]+)", body))
      for key in ("name", "id"):
        if key not in fields:
          raise LabelFileError(path, line, key, "missing in item")
      name = fields["name"].strip("\"'")
      display = fields.get("display_name", fields["name"]).strip("\"'")
      items.append((int(fields["id"]), name, display.encode().decode("unicode_escape")))
    if not items:
      raise LabelFileError(path, None, "item", "no items found")
    items.sort()
    return cls.from_pairs([(mid, display) for _, mid, display in items])

  @classmethod
  def from_file(cls, path) -> "LabelMap":
    """A class list by its extension: `.pbtxt` label map, else class-descriptions CSV."""
    return cls.from_pbtxt(path) if str(path).endswith(".pbtxt") else cls.from_csv(path)

  def __len__(self) -> int:
    return len(self.mids)

  def __contains__(self, mid: str) -> bool:
    return mid in self._index

  def index(self, mid: str) -> int:
    return self._index[mid]

  def name(self, mid: str) -> str:
    return self.names[self._index[mid]]

  def indices(self, mids: Sequence[str] | np.ndarray, missing: int | None = None) -> np.ndarray:
    """Indices of many MIDs; unknown MIDs raise KeyError unless `missing` gives their value."""
    if missing is None:
      return np.fromiter((self._index[m] for m in mids), dtype=np.int32, count=len(mids))
    get = self._index.get
    return np.fromiter((get(m, missing) for m in mids), dtype=np.int32, count=len(mids))

  def to_csv(self, path) -> None:
    """Writes `MID,DisplayName` rows, no header, as the official class-descriptions files are."""
    with open(path, "w", encoding="utf-8", newline="") as f:
      csv.writer(f, lineterminator="\n").writerows(zip(self.mids, self.names))


@dataclasses.dataclass(frozen=True)
class ExpansionTable:
  """CSR table over a LabelMap's indices: row i lists i itself, then the classes it expands to."""

  indptr: np.ndarray  # int64, len(label_map) + 1
  indices: np.ndarray  # int32

  def counts(self, labels: np.ndarray) -> np.ndarray:
    return self.indptr[labels + 1] - self.indptr[labels]

  def expand(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For an array of class indices, returns (source_row, expanded_label), self first per row.

    `source_row` indexes `labels`, so callers gather any other column (boxes, image ids, flags)
    with it. Labels that the table does not know (negative values) raise ValueError.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(self.indptr) - 1):
      raise ValueError("labels outside the label map")
    counts = self.counts(labels)
    rows = np.repeat(np.arange(labels.size, dtype=np.int64), counts)
    # Position of each output element inside its row's CSR slice.
    first_out = np.cumsum(counts) - counts
    offset = np.arange(rows.size, dtype=np.int64) - np.repeat(first_out, counts)
    out = self.indices[np.repeat(self.indptr[labels], counts) + offset]
    return rows, out.astype(np.int32)

  def dense(self) -> np.ndarray:
    """A boolean relation matrix M[i, j]: class i expands to class j. Only for small maps."""
    n = len(self.indptr) - 1
    matrix = np.zeros((n, n), dtype=bool)
    rows = np.repeat(np.arange(n), np.diff(self.indptr))
    matrix[rows, self.indices] = True
    return matrix


class Hierarchy:
  """The Open Images class hierarchy: a DAG of is-a (`Subcategory`) edges, plus `Part` edges."""

  def __init__(self, tree: Mapping, path: str | os.PathLike | None = None):
    self.root = tree.get("LabelName")
    if self.root is None:
      raise LabelFileError(path or "<hierarchy>", None, "LabelName", "the top node has none")
    self._parents: dict[str, set[str]] = {self.root: set()}
    self._children: dict[str, list[str]] = {}
    self._parts: dict[str, list[str]] = {}
    stack = [(tree, ())]
    while stack:
      node, trail = stack.pop()
      mid = node.get("LabelName")
      if not isinstance(mid, str):
        raise LabelFileError(path or "<hierarchy>", None, "LabelName",
                             f"missing under {' > '.join(trail) or 'the root'}")
      if mid in trail:
        raise LabelFileError(path or "<hierarchy>", None, "Subcategory",
                             f"cycle: {' > '.join(trail + (mid,))}")
      self._parents.setdefault(mid, set())
      for child in node.get("Subcategory", ()):
        child_mid = child.get("LabelName")
        self._parents.setdefault(child_mid, set()).add(mid)
        kids = self._children.setdefault(mid, [])
        if child_mid not in kids:
          kids.append(child_mid)
        stack.append((child, trail + (mid,)))
      for part in node.get("Part", ()):
        part_mid = part.get("LabelName")
        if part_mid not in self._parts.setdefault(mid, []):
          self._parts[mid].append(part_mid)
        # A part may have its own subtree; its is-a edges count like any other.
        stack.append((part, trail + (mid,)))
    self._ancestors_cache: dict[str, frozenset[str]] = {}

  @classmethod
  def from_json(cls, path) -> "Hierarchy":
    try:
      tree = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
      raise LabelFileError(path, e.lineno, "json", e.msg) from None
    return cls(tree, path)

  @property
  def mids(self) -> list[str]:
    """Every MID in the file, the root included, in first-seen order."""
    return list(self._parents)

  def __contains__(self, mid: str) -> bool:
    return mid in self._parents

  def parents(self, mid: str) -> set[str]:
    return set(self._parents[mid])

  def children(self, mid: str) -> list[str]:
    return list(self._children.get(mid, ()))

  def parts(self, mid: str) -> list[str]:
    """The classes listed under `mid`'s `Part` key (a has-part relation, not is-a)."""
    return list(self._parts.get(mid, ()))

  def ancestors(self, mid: str) -> frozenset[str]:
    """All is-a ancestors of `mid` through every parent, the root excluded."""
    cached = self._ancestors_cache.get(mid)
    if cached is None:
      found = set()
      for parent in self._parents[mid]:
        if parent != self.root:
          found.add(parent)
          found |= self.ancestors(parent)
      cached = self._ancestors_cache[mid] = frozenset(found)
    return cached

  def descendants(self, mid: str) -> frozenset[str]:
    """All is-a descendants of `mid`."""
    found, stack = set(), list(self._children.get(mid, ()))
    while stack:
      child = stack.pop()
      if child not in found:
        found.add(child)
        stack.extend(self._children.get(child, ()))
    return frozenset(found)

  def _table(self, label_map: LabelMap, relatives) -> ExpansionTable:
    indptr = [0]
    indices: list[int] = []
    for i, mid in enumerate(label_map.mids):
      related = relatives(mid) if mid in self._parents and mid != self.root else ()
      row = sorted(label_map.index(m) for m in related if m in label_map)
      indices.append(i)
      indices.extend(row)
      indptr.append(len(indices))
    return ExpansionTable(np.asarray(indptr, np.int64), np.asarray(indices, np.int32))

  def ancestor_table(self, label_map: LabelMap) -> ExpansionTable:
    """Row i: class i and its ancestors within `label_map` (classes not in the file: itself only)."""
    return self._table(label_map, self.ancestors)

  def descendant_table(self, label_map: LabelMap) -> ExpansionTable:
    """Row i: class i and its descendants within `label_map`."""
    return self._table(label_map, self.descendants)


class Expander:
  """Applies the Challenge protocol's hierarchy expansion to index arrays over one LabelMap."""

  def __init__(self, hierarchy: Hierarchy, label_map: LabelMap):
    self.label_map = label_map
    self.up = hierarchy.ancestor_table(label_map)
    self.down = hierarchy.descendant_table(label_map)

  def boxes(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each box copied to every ancestor: returns (source_row, label)."""
    return self.up.expand(labels)

  predictions = boxes  # The optional prediction expansion follows the same rule as boxes.

  def image_labels(self, labels: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives (confidence 1) up to ancestors, verified negatives (0) down to descendants.

    Rows with other confidences (machine labels) are kept unexpanded. Returns (source_row, label),
    rows in input order.
    """
    labels = np.asarray(labels)
    confidence = np.asarray(confidence)
    pos = np.flatnonzero(confidence == 1)
    neg = np.flatnonzero(confidence == 0)
    other = np.flatnonzero((confidence != 1) & (confidence != 0))
    pos_rows, pos_labels = self.up.expand(labels[pos])
    neg_rows, neg_labels = self.down.expand(labels[neg])
    rows = np.concatenate([pos[pos_rows], neg[neg_rows], other])
    out = np.concatenate([pos_labels, neg_labels, labels[other].astype(np.int32)])
    order = np.argsort(rows, kind="stable")
    return rows[order], out[order]
