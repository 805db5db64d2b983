"""The Open Images annotations as SQL tables, and the two databases that hold them (DuckDB, PostgreSQL).

    classes       mid PK, display_name, boxable
    hierarchy     (parent, child, relation) PK, both -> classes; relation 'subcategory' (is-a) or 'part'
    images        image_id PK, split, the metadata columns (NULL for an image only the annotations name)
    boxes         (image_id, n) PK -> images, label_name -> classes; split, source, confidence,
                  x_min, x_max, y_min, y_max, the five flags (-1 unknown), x_click1x .. x_click4y
    image_labels  (image_id, kind, n) PK -> images, label_name -> classes; kind 'human' or 'machine',
                  split, source, confidence (1 positive, 0 verified negative, a fraction for machine)
    oi_loads      key PK, value: what was loaded from which files (JSON), for idempotent re-runs

`n` is a row's position among its image's rows in the file, so (image_id, n) names a box for good.
Column names are the official ones in snake case (`XMin` -> `x_min`: PostgreSQL reserves `xmin`).

Constraints cost most of a bulk load, so each database gets them the way it is fastest at: PostgreSQL
loads into bare tables and adds primary keys, foreign keys and indexes afterwards (one validating pass
each). DuckDB cannot add a foreign key to an existing table, and a declared one checks every inserted
row against an ART index (1.5M boxes: 11 s with the two foreign keys, 0.5 s without), so there the
small tables are created with theirs, the bulk tables (boxes, image_labels) without, and after the load
one anti-join per foreign key proves that no row names a missing image or class (0.7 s per 1.5M rows)
before the primary keys are added. Secondary indexes (boxes and labels by class) exist in
PostgreSQL only: DuckDB's ART indexes take longer to build than the scans they would save (its zone
maps and vectorized scans answer a class query on 14.6M boxes in milliseconds; see
benchmarks/sql_import.py).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
from typing import Sequence

import pyarrow as pa
import pyarrow.csv as pa_csv


@dataclasses.dataclass(frozen=True)
class Table:
  name: str
  columns: tuple[tuple[str, str], ...]  # (name, SQL type)
  primary_key: tuple[str, ...]
  foreign_keys: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...] = ()
  indexes: tuple[tuple[str, ...], ...] = ()  # PostgreSQL only (see the module docstring)
  small: bool = False  # Primary key declared with the table in DuckDB too (others reference it).
  bulk: bool = False  # Millions of rows: DuckDB checks its foreign keys after the load.

  @property
  def column_names(self) -> list[str]:
    return [name for name, _ in self.columns]


_FLAGS = tuple((f"is_{flag}", "SMALLINT") for flag in
               ("occluded", "truncated", "group_of", "depiction", "inside"))
_CLICKS = tuple((f"x_click{i}{axis}", "REAL") for axis in "xy" for i in range(1, 5))
CLICK_COLUMNS = tuple(name for name, _ in _CLICKS)

TABLES = (
    Table("classes", (("mid", "TEXT NOT NULL"), ("display_name", "TEXT"),
                      ("boxable", "BOOLEAN NOT NULL")), ("mid",), small=True),
    Table("hierarchy", (("parent", "TEXT NOT NULL"), ("child", "TEXT NOT NULL"),
                        ("relation", "TEXT NOT NULL")), ("parent", "child", "relation"),
          ((("parent",), "classes", ("mid",)), (("child",), "classes", ("mid",))),
          indexes=(("child",),)),
    Table("images", (("image_id", "TEXT NOT NULL"), ("split", "TEXT NOT NULL"),
                     ("original_url", "TEXT"), ("original_landing_url", "TEXT"), ("license", "TEXT"),
                     ("author_profile_url", "TEXT"), ("author", "TEXT"), ("title", "TEXT"),
                     ("original_size", "BIGINT"), ("original_md5", "TEXT"),
                     ("thumbnail_300k_url", "TEXT"), ("rotation", "REAL")), ("image_id",),
          indexes=(("split",),)),
    Table("boxes", (("image_id", "TEXT NOT NULL"), ("n", "INTEGER NOT NULL"),
                    ("split", "TEXT NOT NULL"), ("label_name", "TEXT NOT NULL"), ("source", "TEXT"),
                    ("confidence", "REAL"), ("x_min", "REAL"), ("x_max", "REAL"), ("y_min", "REAL"),
                    ("y_max", "REAL")) + _FLAGS + _CLICKS, ("image_id", "n"),
          ((("image_id",), "images", ("image_id",)), (("label_name",), "classes", ("mid",))),
          indexes=(("label_name", "split"),), bulk=True),
    Table("image_labels", (("image_id", "TEXT NOT NULL"), ("kind", "TEXT NOT NULL"),
                           ("n", "INTEGER NOT NULL"), ("split", "TEXT NOT NULL"),
                           ("label_name", "TEXT NOT NULL"), ("source", "TEXT"),
                           ("confidence", "REAL")), ("image_id", "kind", "n"),
          ((("image_id",), "images", ("image_id",)), (("label_name",), "classes", ("mid",))),
          indexes=(("label_name", "split"),), bulk=True),
    Table("oi_loads", (("key", "TEXT NOT NULL"), ("value", "TEXT")), ("key",), small=True),
)
TABLE = {t.name: t for t in TABLES}


def _create(table: Table, with_keys: bool) -> str:
  parts = [f"{name} {kind}" for name, kind in table.columns]
  if with_keys and table.small:
    parts.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
  if with_keys and not table.bulk:
    parts += [f"FOREIGN KEY ({', '.join(cols)}) REFERENCES {ref} ({', '.join(ref_cols)})"
              for cols, ref, ref_cols in table.foreign_keys]
  return f"CREATE TABLE {table.name} ({', '.join(parts)})"


class Database:
  """A connection to a DuckDB file or a PostgreSQL database, with the operations the tools need."""

  dialect = ""

  def execute(self, sql: str, params: Sequence = ()) -> None:
    raise NotImplementedError

  def query(self, sql: str, params: Sequence = ()) -> tuple[list[str], list[tuple]]:
    """(column names, rows); `?` marks a parameter in either dialect."""
    raise NotImplementedError

  def insert(self, table: str, rows: pa.Table) -> None:
    raise NotImplementedError

  def create_tables(self) -> None:
    raise NotImplementedError

  def add_constraints(self) -> None:
    raise NotImplementedError

  def has_table(self, name: str) -> bool:
    _, rows = self.query("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                         (name,))
    return rows[0][0] > 0

  def commit(self) -> None:
    self.connection.commit()

  def close(self) -> None:
    self.connection.close()


class DuckDB(Database):
  """An embedded DuckDB file (`path`); `read_only` for queries while another process loads."""

  dialect = "duckdb"

  def __init__(self, path, read_only: bool = False):
    import duckdb  # pylint: disable=g-import-not-at-top  # the `tools` extra
    self.path = pathlib.Path(path)
    self.connection = duckdb.connect(str(path), read_only=read_only)

  def execute(self, sql, params=()):
    self.connection.execute(sql, list(params))

  def query(self, sql, params=()):
    cursor = self.connection.execute(sql, list(params))
    return [d[0] for d in cursor.description], cursor.fetchall()

  def insert(self, table, rows):
    self.connection.register("_oi_rows", rows)
    try:
      self.connection.execute(f"INSERT INTO {table} ({', '.join(rows.column_names)}) "
                              f"SELECT * FROM _oi_rows")
    finally:
      self.connection.unregister("_oi_rows")

  def create_tables(self):
    for table in TABLES:
      self.execute(_create(table, with_keys=True))

  def add_constraints(self):
    missing = foreign_key_violations(self)
    if missing:
      raise ValueError("rows name a missing key: " + ", ".join(
          f"{table}.{'/'.join(cols)}: {n:,} rows" for (table, cols), n in missing.items()))
    for table in TABLES:
      if not table.small:
        self.execute(f"ALTER TABLE {table.name} ADD PRIMARY KEY ({', '.join(table.primary_key)})")

  def commit(self):
    self.connection.execute("CHECKPOINT")


class PostgreSQL(Database):
  """A PostgreSQL database through psycopg 3; bulk rows go in with COPY (CSV)."""

  dialect = "postgresql"

  def __init__(self, dsn: str):
    import psycopg  # pylint: disable=g-import-not-at-top  # the `tools` extra
    self.connection = psycopg.connect(dsn)

  def execute(self, sql, params=()):
    self.connection.execute(sql.replace("?", "%s"), list(params) or None)

  def query(self, sql, params=()):
    cursor = self.connection.execute(sql.replace("?", "%s"), list(params) or None)
    return [d.name for d in cursor.description], cursor.fetchall()

  def insert(self, table, rows):
    buffer = io.BytesIO()
    pa_csv.write_csv(rows, buffer, pa_csv.WriteOptions(include_header=False))
    with self.connection.cursor() as cursor:
      with cursor.copy(f"COPY {table} ({', '.join(rows.column_names)}) FROM STDIN "
                       "(FORMAT csv)") as copy:
        copy.write(buffer.getbuffer())

  def create_tables(self):
    for table in TABLES:
      self.execute(_create(table, with_keys=False))

  def add_constraints(self):
    self.execute("SET LOCAL maintenance_work_mem = '256MB'")  # Index builds sort in memory.
    for table in TABLES:
      self.execute(f"ALTER TABLE {table.name} ADD PRIMARY KEY ({', '.join(table.primary_key)})")
    for table in TABLES:
      for i, (cols, ref, ref_cols) in enumerate(table.foreign_keys):
        self.execute(f"ALTER TABLE {table.name} ADD CONSTRAINT {table.name}_fk{i} FOREIGN KEY "
                     f"({', '.join(cols)}) REFERENCES {ref} ({', '.join(ref_cols)})")
      for cols in table.indexes:
        self.execute(f"CREATE INDEX {table.name}_by_{'_'.join(cols)} ON {table.name} "
                     f"({', '.join(cols)})")
    self.execute("ANALYZE")

  def drop_tables(self):
    for table in reversed(TABLES):
      self.execute(f"DROP TABLE IF EXISTS {table.name} CASCADE")


def foreign_key_violations(db: Database) -> dict[tuple[str, tuple[str, ...]], int]:
  """{(table, columns): rows whose key the referenced table lacks}, over the bulk tables' foreign
  keys (the ones DuckDB does not declare); empty when every row's image and class exist."""
  found = {}
  for table in TABLES:
    if not table.bulk:
      continue
    for cols, ref, ref_cols in table.foreign_keys:
      match = " AND ".join(f"t.{c} = r.{rc}" for c, rc in zip(cols, ref_cols))
      _, rows = db.query(f"SELECT count(*) FROM {table.name} t "
                         f"WHERE NOT EXISTS (SELECT 1 FROM {ref} r WHERE {match})")
      if rows[0][0]:
        found[(table.name, tuple(cols))] = int(rows[0][0])
  return found


def is_postgresql(url: str) -> bool:
  return url.startswith(("postgresql://", "postgres://"))


def connect(url: str, read_only: bool = False) -> Database:
  """A PostgreSQL URL (`postgresql://user@host:port/db`), or the path of a DuckDB file."""
  if is_postgresql(url):
    return PostgreSQL(url)
  return DuckDB(os.path.expanduser(url), read_only=read_only)
