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
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from oi_models.io.errors import AnnotationError

ROOT_MID = "/m/0bl9f"
_MID_RE = re.compile(r"^/[mg]/[0-9a-z_]+$")
# The header words of the official class-descriptions files (V6/V7 `LabelName,DisplayName`); the older
# files have no header.
_CLASS_LIST_HEADERS = ({"labelname", "mid"}, {"displayname"})
# Label-map text format: quoted strings may hold braces, colons and escaped quotes.
_PBTXT_STRING = r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
_PBTXT_ITEM = re.compile(r"\bitem\s*\{((?:" + _PBTXT_STRING + r"|[^{}\"'])*)\}")
_PBTXT_FIELD = re.compile(r"(\w+)\s*:\s*(" + _PBTXT_STRING + r"|[-+\w.]+)")


def is_mid(text: str) -> bool:
  """True for an Open Images / Freebase machine ID such as `/m/01g317` or `/g/11bc5rm8n_`."""
  return bool(_MID_RE.match(text))


def _is_header(row: Sequence[str]) -> bool:
  """A `LabelName,DisplayName` (or `MID,DisplayName`) row; a malformed MID is an error, not a header."""
  first, second = _CLASS_LIST_HEADERS
  return len(row) == 2 and row[0].strip().lower() in first and row[1].strip().lower() in second


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
      if line == 1 and _is_header(row):
        continue
      if len(row) < 2:
        raise AnnotationError(path, line, "DisplayName", f"missing (row has {len(row)} field)")
      mid = row[0].strip()
      if not is_mid(mid):
        raise AnnotationError(path, line, "LabelName", f"{mid!r} is not a MID")
      pairs.append((mid, ",".join(row[1:]) if len(row) > 2 else row[1]))
    try:
      return cls.from_pairs(pairs)
    except ValueError as e:
      raise AnnotationError(path, None, "LabelName", str(e)) from None

  @classmethod
  def from_pbtxt(cls, path) -> "LabelMap":
    """Reads a TF Object Detection API label map (`item { name: id: display_name: }`), ordered by id.

    Strings are protobuf text format: UTF-8, or escaped (`\\303\\252` octal bytes, as
    `text_format` writes non-ASCII by default; `\\"`, `\\n`, `\\x..`); both decode to the same name.
    """
    from google.protobuf import text_encoding  # pylint: disable=g-import-not-at-top

    text = _read_text(path)
    items, seen = [], {}
    line, counted = 1, 0
    for match in _PBTXT_ITEM.finditer(text):
      line += text.count("\n", counted, match.start())
      counted = match.start()
      fields = {key: value for key, value in _PBTXT_FIELD.findall(match.group(1))}
      for key in ("name", "id"):
        if key not in fields:
          raise AnnotationError(path, line, key, "missing in item")
      try:
        item_id = int(fields["id"])
      except ValueError:
        raise AnnotationError(path, line, "id", f"{fields['id']!r} is not an integer") from None
      if item_id in seen:
        raise AnnotationError(path, line, "id", f"{item_id} appears twice (also at line {seen[item_id]})")
      seen[item_id] = line
      strings = []
      for key in ("name", "display_name"):
        raw = fields.get(key, fields["name"])
        if raw[:1] in "\"'":
          raw = raw[1:-1]
        try:
          strings.append(text_encoding.CUnescape(raw).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
          raise AnnotationError(path, line, key, f"not UTF-8 text: {e}") from None
      items.append((item_id, *strings))
    if not items:
      raise AnnotationError(path, None, "item", "no items found")
    items.sort()
    try:
      return cls.from_pairs([(mid, display) for _, mid, display in items])
    except ValueError as e:
      raise AnnotationError(path, None, "name", str(e)) from None

  @classmethod
  def from_file(cls, path) -> "LabelMap":
    """A class list by its extension: `.pbtxt` label map, else class-descriptions CSV."""
    return cls.from_pbtxt(path) if str(path).endswith(".pbtxt") else cls.from_csv(path)

  @classmethod
  def from_class_list(cls, path, display_names: Callable[[], Mapping[str, str]] | None = None,
                      names_required_from: str | None = None) -> "LabelMap":
    """A model's classes in output order: a `.pbtxt` label map, a class-descriptions CSV, or one MID
    per line (`classes-trainable.txt`, as the released classifier lists its 5000 classes).

    A MID list has no names: they come from `display_names()` (called only for such a file; e.g. the
    class-descriptions CSV or the dataset's classes); a MID it does not name is its own name, or, when
    `names_required_from` says where the names come from, an error naming the line and that source.
    """
    text = _read_text(path)
    first = next((line for line in text.splitlines() if line.strip()), "")
    if str(path).endswith(".pbtxt") or "," in first:
      return cls.from_file(path)
    names = display_names() if display_names is not None else {}
    pairs = []
    for line, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
      if not row or not row[0].strip():
        continue
      mid = row[0].strip()
      if not is_mid(mid):
        raise AnnotationError(path, line, "LabelName", f"{mid!r} is not a MID")
      if names_required_from is not None and mid not in names:
        raise AnnotationError(path, line, "LabelName", f"{mid} has no name in {names_required_from}")
      pairs.append((mid, names.get(mid, mid)))
    try:
      return cls.from_pairs(pairs)
    except ValueError as e:
      raise AnnotationError(path, None, "LabelName", str(e)) from None

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
  """The Open Images class hierarchy: a DAG of is-a (`Subcategory`) edges, plus `Part` edges.

  The constructor checks the structure (objects with a string `LabelName`, `Subcategory` and `Part`
  lists of objects) and that the is-a edges have no cycle, even one through several branches (A under
  B in one place, B under A in another); each is an `AnnotationError` naming the MIDs. Whether the
  MIDs fit a class list is `validate_hierarchy`'s job.
  """

  def __init__(self, tree: Mapping, path: str | os.PathLike | None = None):
    self.path = None if path is None else str(path)
    where = path or "<hierarchy>"
    if not isinstance(tree, Mapping):
      raise AnnotationError(where, None, "LabelName", "the top level must be an object "
                            f'{{"LabelName": ..., "Subcategory": [...]}}, got a {type(tree).__name__}')
    self.root = tree.get("LabelName")
    if not isinstance(self.root, str):
      raise AnnotationError(where, None, "LabelName", "the top node has none")
    self._parents: dict[str, set[str]] = {self.root: set()}
    self._children: dict[str, list[str]] = {}
    self._parts: dict[str, list[str]] = {}
    stack = [(tree, ())]
    while stack:
      node, trail = stack.pop()
      mid = node.get("LabelName")
      if not isinstance(mid, str):
        raise AnnotationError(where, None, "LabelName",
                              f"missing under {' > '.join(trail) or 'the root'}")
      self._parents.setdefault(mid, set())
      for key, edges in (("Subcategory", self._children), ("Part", self._parts)):
        entries = node.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
          raise AnnotationError(where, None, key, f"under {' > '.join(trail + (mid,))}: must be a "
                                f"list of objects, got {json.dumps(entries)[:80]}")
        for entry in entries:
          stack.append((entry, trail + (mid,)))
          entry_mid = entry.get("LabelName")
          if not isinstance(entry_mid, str):
            continue  # reported with its trail when the entry is popped
          listed = edges.setdefault(mid, [])
          if entry_mid not in listed:
            listed.append(entry_mid)
          if key == "Subcategory":
            self._parents.setdefault(entry_mid, set()).add(mid)
          # A part may have its own subtree; its is-a edges count like any other.
    self._check_acyclic(where)
    self._ancestors_cache: dict[str, frozenset[str]] = {}

  def _check_acyclic(self, where) -> None:
    """Raises AnnotationError with one cycle of is-a edges, if any (iterative depth-first search)."""
    state = dict.fromkeys(self._parents, 0)  # 0 unseen, 1 on the current path, 2 done
    for start in self._parents:
      if state[start]:
        continue
      path, iters = [start], [iter(self._children.get(start, ()))]
      state[start] = 1
      while path:
        child = next(iters[-1], None)
        if child is None:
          state[path.pop()] = 2
          iters.pop()
        elif state[child] == 1:
          cycle = path[path.index(child):] + [child]
          raise AnnotationError(where, None, "Subcategory", f"cycle: {' > '.join(cycle)}")
        elif state[child] == 0:
          state[child] = 1
          path.append(child)
          iters.append(iter(self._children.get(child, ())))

  @classmethod
  def from_json(cls, path) -> "Hierarchy":
    try:
      tree = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
      raise AnnotationError(path, e.lineno, "json", e.msg) from None
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


def validate_hierarchy(hierarchy, label_map: LabelMap, path=None) -> Hierarchy:
  """Checks that a hierarchy belongs with a class list; returns it as a Hierarchy.

  A hierarchy and a class list fit when one's MIDs lie within the other's: a class list may be a subset
  of the hierarchy's classes (the Challenge's 500 under the 600-class tree, or a few chosen classes),
  or the hierarchy may cover only some of the list (the box tree under all 19,995 image-level
  classes). When each holds MIDs the other lacks, the pair is from different releases or files, or
  has a typo, and expansion would silently do nothing for those classes: an AnnotationError names the
  hierarchy's MIDs that the class list does not know (and the list's that the hierarchy lacks).
  Structure and cycles are checked by `Hierarchy` itself.

  Args:
    hierarchy: a Hierarchy, the parsed JSON (a dict), or the path of a hierarchy JSON.
    label_map: the class list.
    path: the file the hierarchy came from, for messages (taken from `hierarchy` when it is a path).
  """
  if isinstance(hierarchy, Hierarchy):
    path = path or hierarchy.path
  elif isinstance(hierarchy, Mapping) or not isinstance(hierarchy, (str, os.PathLike)):
    hierarchy = Hierarchy(hierarchy, path)
  else:
    path = hierarchy
    hierarchy = Hierarchy.from_json(path)
  mids = set(hierarchy.mids) - {hierarchy.root}
  unknown = sorted(mids - set(label_map.mids))
  absent = sorted(set(label_map.mids) - mids)
  if unknown and absent:
    listed = lambda found: ", ".join(found[:8]) + (f" and {len(found) - 8:,} more" if len(found) > 8 else "")
    raise AnnotationError(
        path or "<hierarchy>", None, "LabelName",
        f"{len(unknown):,} of its {len(mids):,} MIDs are not in the class list ({len(label_map):,} "
        f"classes): {listed(unknown)}; and {len(absent):,} classes of the list are not in the "
        f"hierarchy: {listed(absent)}. Is it the hierarchy of this class list (same release)?")
  return hierarchy


class Expander:
  """Applies the Challenge protocol's hierarchy expansion to index arrays over one LabelMap."""

  def __init__(self, hierarchy: Hierarchy, label_map: LabelMap):
    validate_hierarchy(hierarchy, label_map)  # a mismatched pair would expand nothing, silently
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
