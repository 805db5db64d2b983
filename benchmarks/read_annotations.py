"""Streaming box reader against pandas on an Open Images V6 train box file (full size: 14.6M rows).

The V6 train box CSV has 14.6M rows in 21 columns (about 2 GB): a TFDS build or an evaluation must
walk it image by image without holding it in memory as Python objects. This benchmark writes a
synthetic file of that shape (sorted by ImageID, 0.119 images per row, 600 MIDs, 6-decimal
coordinates, Source xclick/activemil, flags 0/1, XClick points with -1 for activemil boxes), cached
in --work_dir, then times, each in its own subprocess so that peak RSS belongs to one reader:

  oi_models   `readers.iter_image_groups` over the whole file, touching every group (its row count
              and its first box's XMin);
  pandas      `pandas.read_csv` of the whole file, then `groupby("ImageID")` and a walk over every
              group's row indices (`GroupBy.indices`), touching the same two things;
  parse_only  the engine's read, quote guard and pyarrow parse of every segment and nothing else
              (no checks, no tables, no groups, no prefetch thread): the part of oi_models' time
              that is pyarrow's parse, which sets how fast oi_models can be.

Figures are medians over --repeats: wall seconds, rows/s, CPU seconds (user + system, all threads),
peak RSS (the child's ru_maxrss from wait4), and ratios to pandas measured in the same run, runs of
the readers interleaved. The machine's load average is printed before and after, and whether
oi_models parsed with pyarrow's threads: it does only when a core is free for them
(`csv_engine.parse_threads`). On a quiet machine oi_models' wall time is about half its CPU time
(pyarrow's threads, and the next segment parsed on the prefetch thread while the groups of this one
are walked); on a machine whose cores are busy with other work every thread only shares the time
the process gets, and the wall-time ratio follows the CPU-time ratio. Targets on the full-size
file: oi_models wall speed >= 1.8x pandas, peak RSS <= 1/4 of pandas'.

    python benchmarks/read_annotations.py                       # 3M rows, 3 runs (make bench)
    python benchmarks/read_annotations.py --rows 14610229       # full size, 1 run
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

_ROWS = flags.DEFINE_integer("rows", 3_000_000, "Box rows in the generated file (the full V6 "
                             "train file: 14,610,229).")
_IMAGES_PER_ROW = flags.DEFINE_float("images_per_row", 1_743_042 / 14_610_229,
                                     "Images per box row (V6 train: 1,743,042 images).")
_REPEATS = flags.DEFINE_integer("repeats", None, "Timed runs per reader; the median is reported. "
                                "Default: 1 at full size (>= 5M rows), else 3.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Where the generated file is cached (default: a "
                                "fixed folder under the system temp dir).")
_CHUNK_BYTES = flags.DEFINE_integer("chunk_bytes", None, "The reader's chunk size in bytes "
                                    "(default: the reader's own default).")
_READERS = flags.DEFINE_list("readers", ["oi_models", "pandas", "parse_only"],
                            "Which readers to time.")
_CHILD = flags.DEFINE_string("child", None, "Internal: run one reader in this process and print "
                             "JSON (used by the parent process).")
_PATH = flags.DEFINE_string("path", None, "Internal: the file a child reads.")

_HEADER = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
           "IsGroupOf,IsDepiction,IsInside,XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,"
           "XClick3Y,XClick4Y\n")
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_GEN_CHUNK = 500_000


# ----------------------------------------------------------------------------------------------
# Generation: every field is a fixed-width byte slot plus a length; rows are compacted with one
# boolean mask, so no Python code runs per row.


def _mids(rng: np.random.Generator, n: int) -> list[bytes]:
  alphabet = np.frombuffer(b"0123456789bcdfghjklmnpqrstvwxyz_", np.uint8)
  mids: dict[bytes, None] = {}
  while len(mids) < n:
    size = int(rng.integers(4, 9))
    mids.setdefault(b"/m/0" + bytes(alphabet[rng.integers(0, 32, size)]), None)
  return list(mids)


def _slot(values: list[bytes], codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Byte slot [n, width] and lengths for categorical values."""
  width = max(len(v) for v in values)
  table = np.zeros((len(values), width), np.uint8)
  for i, v in enumerate(values):
    table[i, :len(v)] = np.frombuffer(v, np.uint8)
  lengths = np.asarray([len(v) for v in values], np.int64)
  return table[codes], lengths[codes]


def _hex_slot(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  raw = keys.astype(">u8").view(np.uint8).reshape(-1, 8)
  out = np.empty((len(keys), 16), np.uint8)
  out[:, 0::2] = _HEX[raw >> 4]
  out[:, 1::2] = _HEX[raw & 15]
  return out, np.full(len(keys), 16, np.int64)


def _micro_slot(micro: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """6-decimal text of micro-units in [0, 1e6] ("0.012500", "1.000000"); -1 where micro < 0."""
  n = len(micro)
  out = np.empty((n, 8), np.uint8)
  out[:, 0] = ord("0") + (micro >= 1_000_000)
  out[:, 1] = ord(".")
  frac = np.where(micro >= 1_000_000, 0, np.maximum(micro, 0))
  for i in range(6):
    out[:, 7 - i] = ord("0") + frac % 10
    frac //= 10
  lengths = np.full(n, 8, np.int64)
  negative = micro < 0
  out[negative, 0:2] = np.frombuffer(b"-1", np.uint8)
  lengths[negative] = 2
  return out, lengths


def _digit_slot(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  return (ord("0") + values).astype(np.uint8)[:, None], np.ones(len(values), np.int64)


def _assemble(slots: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
  """Joins the slots with commas and newlines into CSV bytes."""
  n = len(slots[0][0])
  pieces, keeps = [], []
  for i, (data, lengths) in enumerate(slots):
    sep = np.full((n, 1), ord("\n") if i == len(slots) - 1 else ord(","), np.uint8)
    pieces += [data, sep]
    keeps += [np.arange(data.shape[1])[None, :] < lengths[:, None], np.ones((n, 1), bool)]
  return np.concatenate(pieces, axis=1)[np.concatenate(keeps, axis=1)].tobytes()


def _rows_chunk(rng, keys, mids) -> bytes:
  n = len(keys)
  activemil = rng.random(n) < 0.2
  x = np.sort(rng.integers(0, 1_000_001, (n, 2)), axis=1)
  y = np.sort(rng.integers(0, 1_000_001, (n, 2)), axis=1)
  slots = [_hex_slot(keys),
           _slot([b"xclick", b"activemil"], activemil.astype(np.int64)),
           _slot(mids, rng.integers(0, len(mids), n)),
           _digit_slot(np.ones(n, np.int64)),
           _micro_slot(x[:, 0]), _micro_slot(x[:, 1]), _micro_slot(y[:, 0]), _micro_slot(y[:, 1])]
  for p in (0.6, 0.3, 0.05, 0.05, 0.01):
    slots.append(_digit_slot((rng.random(n) < p).astype(np.int64)))
  # Extreme points: one on each side of the box; -1 for boxes drawn without extreme clicking.
  sides = [x[:, 0], x[:, 1], y[:, 0], y[:, 1]]
  across = [(y[:, 0], y[:, 1]), (y[:, 0], y[:, 1]), (x[:, 0], x[:, 1]), (x[:, 0], x[:, 1])]
  clicks_x, clicks_y = [], []
  for i, (lo, hi) in enumerate(across):
    along = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    cx, cy = (sides[i], along) if i < 2 else (along, sides[i])
    clicks_x.append(np.where(activemil, -1, cx))
    clicks_y.append(np.where(activemil, -1, cy))
  slots += [_micro_slot(v) for v in clicks_x + clicks_y]
  return _assemble(slots)


def generate(path: pathlib.Path, rows: int, images_per_row: float, seed: int = 0) -> None:
  """Writes the synthetic V6 train box file (atomically: a partial file is never left as `path`)."""
  rng = np.random.default_rng(seed)
  num_images = max(1, round(rows * images_per_row))
  keys = np.unique(rng.integers(0, 2**64, num_images, dtype=np.uint64, endpoint=False))
  # Every image gets at least one box; the rest are spread at random. Sorted by ImageID.
  per_image = np.ones(len(keys), np.int64) if rows >= len(keys) else np.zeros(len(keys), np.int64)
  extra = max(0, rows - int(per_image.sum()))
  per_image += np.bincount(rng.integers(0, len(keys), extra), minlength=len(keys))
  row_keys = np.repeat(keys, per_image)[:rows]
  mids = _mids(rng, 600)
  tmp = path.with_suffix(".partial")
  with open(tmp, "wb") as f:
    f.write(_HEADER.encode())
    for start in range(0, rows, _GEN_CHUNK):
      f.write(_rows_chunk(rng, row_keys[start:start + _GEN_CHUNK], mids))
  tmp.replace(path)


# ----------------------------------------------------------------------------------------------
# Children: one reader each.


def _run_oi_models(path: str, chunk_bytes: int | None) -> dict:
  from oi_models.io import csv_engine  # pylint: disable=g-import-not-at-top
  from oi_models.io import readers  # pylint: disable=g-import-not-at-top
  threads = csv_engine.parse_threads()  # What the read below decides when it starts.
  start = time.perf_counter()
  kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
  report = readers.ReadReport()
  groups = rows = 0
  checksum = 0.0
  for _, table in readers.iter_image_groups(path, report=report, **kwargs):
    groups += 1
    rows += len(table)
    checksum += float(table.xmin[0])
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "rows": rows, "groups": groups, "checksum": checksum,
          "skipped": sum(report.skipped.values()), "threads": threads}


def _run_pandas(path: str, chunk_bytes: int | None) -> dict:
  del chunk_bytes
  import pandas as pd  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  frame = pd.read_csv(path)
  xmin = frame["XMin"].to_numpy()
  groups = rows = 0
  checksum = 0.0
  for _, indices in frame.groupby("ImageID", sort=True).indices.items():
    groups += 1
    rows += len(indices)
    checksum += float(xmin[indices[0]])
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "rows": rows, "groups": groups, "checksum": checksum, "skipped": 0}


def _run_parse_only(path: str, chunk_bytes: int | None) -> dict:
  """The engine's read, quote guard and pyarrow parse of every segment, and nothing else."""
  from oi_models.io import boxes  # pylint: disable=g-import-not-at-top
  from oi_models.io import csv_engine  # pylint: disable=g-import-not-at-top
  from oi_models.io import readers  # pylint: disable=g-import-not-at-top
  threads = csv_engine.parse_threads()
  start = time.perf_counter()
  stream = csv_engine._Stream(path, boxes.FORMAT, boxes.context(), False, readers.ReadReport(),  # pylint: disable=protected-access
                              chunk_bytes or csv_engine.DEFAULT_CHUNK_BYTES)
  rows = 0
  with open(path, "rb") as f:
    f.readline()
    while data := stream._read(f):  # pylint: disable=protected-access
      rows += stream._prepare(f, data)[1].num_rows  # pylint: disable=protected-access
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "rows": rows, "groups": None, "skipped": 0, "threads": threads}


_CHILDREN = {"oi_models": _run_oi_models, "pandas": _run_pandas, "parse_only": _run_parse_only}


def _measure(reader: str, path: pathlib.Path) -> dict:
  """Runs one reader in a child process; returns its JSON result plus its peak RSS in MB."""
  command = [sys.executable, os.path.abspath(__file__), f"--child={reader}", f"--path={path}"]
  if _CHUNK_BYTES.value:
    command.append(f"--chunk_bytes={_CHUNK_BYTES.value}")
  proc = subprocess.Popen(command, stdout=subprocess.PIPE)
  out = proc.stdout.read()
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode:
    raise RuntimeError(f"{reader} child failed with exit code {proc.returncode}")
  result = json.loads(out.decode().strip().splitlines()[-1])
  result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes.
  result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
  return result


def _table(results: dict[str, list[dict]]) -> str:
  base = results.get("pandas")
  lines = [f"{'reader':<11}{'rows':>12}{'groups':>10}{'seconds':>9}{'rows/s':>12}{'cpu s':>8}"
           f"{'peak MB':>9}{'speed/pd':>10}{'cpu/pd':>8}{'RSS/pd':>8}"]

  def median(runs, key):
    return statistics.median(r[key] for r in runs)

  for reader, runs in results.items():
    seconds, cpu, rss = (median(runs, k) for k in ("seconds", "cpu_seconds", "peak_rss_mb"))
    groups = runs[0]["groups"]
    line = (f"{reader:<11}{runs[0]['rows']:>12,}{'' if groups is None else f'{groups:,}':>10}"
            f"{seconds:>9.1f}"
            f"{runs[0]['rows'] / seconds:>12,.0f}{cpu:>8.1f}{rss:>9.0f}")
    if base:
      line += (f"{median(base, 'seconds') / seconds:>10.2f}{cpu / median(base, 'cpu_seconds'):>8.2f}"
               f"{rss / median(base, 'peak_rss_mb'):>8.2f}")
    lines.append(line)
  return "\n".join(lines)


def _load() -> str:
  load = " ".join(f"{x:.1f}" for x in os.getloadavg())
  return f"load average {load} on {os.cpu_count()} cores"


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(_CHILDREN[_CHILD.value](_PATH.value, _CHUNK_BYTES.value)))
    return
  work_dir = pathlib.Path(_WORK_DIR.value or pathlib.Path(tempfile.gettempdir()) /
                          "oi_models_read_annotations")
  work_dir.mkdir(parents=True, exist_ok=True)
  path = work_dir / f"oidv6-train-annotations-bbox_{_ROWS.value}.csv"
  if not path.exists():
    start = time.perf_counter()
    generate(path, _ROWS.value, _IMAGES_PER_ROW.value)
    print(f"wrote {path} ({path.stat().st_size / 2**20:,.0f} MB) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
  repeats = _REPEATS.value or (1 if _ROWS.value >= 5_000_000 else 3)
  before = _load()
  results: dict[str, list[dict]] = {}
  for _ in range(repeats):
    for reader in _READERS.value:
      results.setdefault(reader, []).append(_measure(reader, path))
  first = {reader: runs[0] for reader, runs in results.items() if reader != "parse_only"}
  if len({(r["rows"], r["groups"]) for r in first.values()}) > 1:
    raise RuntimeError(f"readers disagree: {first}")
  print(f"{path.name}: {path.stat().st_size / 2**20:,.0f} MB, medians of {repeats} run(s); "
        f"{before} before, {_load()} after")
  for reader in ("oi_models", "parse_only"):
    if reader in results:
      modes = sorted({"with" if r["threads"] else "without" for r in results[reader]})
      print(f"{reader} parsed {' and '.join(modes)} pyarrow's threads")
  print(_table(results))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
