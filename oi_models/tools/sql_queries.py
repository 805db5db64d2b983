"""Ready queries on a database `oi-to-sql` loaded: the questions users ask of Open Images most.

    from oi_models.tools import sql_queries, sql_schema
    db = sql_schema.connect("oi.duckdb")          # or "postgresql://user@host/db"
    sql_queries.class_frequencies(db, split="validation", limit=10)
    sql_queries.images_of_class(db, "Cat", split="validation", with_descendants=True)
    sql_queries.classes_of_image(db, "0001eeaf4aed83f9")
    sql_queries.descendants(db, "Animal")

Each returns a `Result` (column names and rows). A class is given by MID or display name
(case-insensitive). Descendants follow the hierarchy's `subcategory` edges (is-a, not `part`) through
a recursive common table expression, so they are found by the database, at any depth, through every
parent of a class with several.
"""

from __future__ import annotations

import dataclasses

from oi_models.tools import sql_schema

QUERIES = ("class_frequencies", "images_of_class", "classes_of_image", "descendants")


@dataclasses.dataclass(frozen=True)
class Result:
  columns: list[str]
  rows: list[tuple]

  def text(self, max_rows: int = 50) -> str:
    """An aligned text table of the first `max_rows` rows."""
    cells = [self.columns] + [["" if v is None else str(v) for v in row]
                              for row in self.rows[:max_rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(self.rows) > max_rows:
      lines.append(f"... {len(self.rows) - max_rows} more rows")
    return "\n".join(lines)


def _run(db: sql_schema.Database, sql: str, params=()) -> Result:
  return Result(*db.query(sql, params))


def resolve_class(db: sql_schema.Database, name_or_mid: str) -> str:
  """The MID of a class given by MID or display name; KeyError when there is none."""
  _, rows = db.query("SELECT mid FROM classes WHERE mid = ? OR lower(display_name) = lower(?) "
                     "ORDER BY mid = ? DESC, boxable DESC, mid LIMIT 1",
                     (name_or_mid, name_or_mid, name_or_mid))
  if not rows:
    raise KeyError(f"no class {name_or_mid!r} (a MID or a display name)")
  return rows[0][0]


_DESCENDANTS = """WITH RECURSIVE below(mid) AS (
    SELECT CAST(? AS TEXT)
    UNION
    SELECT h.child FROM hierarchy h JOIN below b ON h.parent = b.mid
    WHERE h.relation = 'subcategory')"""


def descendants(db: sql_schema.Database, name_or_mid: str) -> Result:
  """Every is-a descendant of a class (not the class itself), with its name."""
  mid = resolve_class(db, name_or_mid)
  return _run(db, f"""{_DESCENDANTS}
    SELECT c.mid, c.display_name FROM below b JOIN classes c ON c.mid = b.mid
    WHERE b.mid <> ? ORDER BY c.display_name, c.mid""", (mid, mid))


def class_frequencies(db: sql_schema.Database, split: str | None = None,
                      limit: int | None = None) -> Result:
  """Per class: boxes, images with a box, human-verified positive and negative image labels."""
  where = "WHERE split = ?" if split else ""
  params = (split, split) if split else ()
  # Boxes per (class, image) first: both databases hash that; count(DISTINCT) made PostgreSQL sort.
  sql = f"""WITH per_image AS (SELECT label_name, image_id, count(*) AS n FROM boxes {where}
                               GROUP BY label_name, image_id),
                 b AS (SELECT label_name, CAST(sum(n) AS BIGINT) AS boxes, count(*) AS images
                       FROM per_image GROUP BY label_name),
                 l AS (SELECT label_name,
                              sum(CASE WHEN confidence = 1 THEN 1 ELSE 0 END) AS positives,
                              sum(CASE WHEN confidence = 0 THEN 1 ELSE 0 END) AS negatives
                       FROM image_labels WHERE kind = 'human' {where.replace('WHERE', 'AND')}
                       GROUP BY label_name)
    SELECT c.mid, c.display_name, coalesce(b.boxes, 0) AS boxes,
           coalesce(b.images, 0) AS images_with_boxes, coalesce(l.positives, 0) AS positives,
           coalesce(l.negatives, 0) AS negatives
    FROM classes c LEFT JOIN b ON b.label_name = c.mid LEFT JOIN l ON l.label_name = c.mid
    WHERE b.boxes IS NOT NULL OR l.positives IS NOT NULL
    ORDER BY boxes DESC, positives DESC, c.mid"""
  if limit:
    sql += f" LIMIT {int(limit)}"
  return _run(db, sql, params)


def images_of_class(db: sql_schema.Database, name_or_mid: str, split: str | None = None,
                    with_descendants: bool = False, limit: int | None = None) -> Result:
  """The boxes of a class (and of its descendants, if asked), image by image."""
  mid = resolve_class(db, name_or_mid)
  split_clause = "AND bx.split = ?" if split else ""
  classes = f"{_DESCENDANTS} " if with_descendants else ""
  wanted = "IN (SELECT mid FROM below)" if with_descendants else "= ?"
  sql = f"""{classes}SELECT bx.image_id, bx.n, bx.label_name, bx.x_min, bx.x_max, bx.y_min, bx.y_max,
           bx.is_group_of, i.original_url
    FROM boxes bx JOIN images i ON i.image_id = bx.image_id
    WHERE bx.label_name {wanted} {split_clause}
    ORDER BY bx.image_id, bx.n"""
  if limit:
    sql += f" LIMIT {int(limit)}"
  return _run(db, sql, (mid,) + ((split,) if split else ()))


def classes_of_image(db: sql_schema.Database, image_id: str) -> Result:
  """The classes on an image: boxes per class and the human label (1, 0 or none)."""
  return _run(db, """WITH b AS (SELECT label_name, count(*) AS boxes FROM boxes
                              WHERE image_id = ? GROUP BY label_name),
                          l AS (SELECT label_name, max(confidence) AS human_label FROM image_labels
                              WHERE image_id = ? AND kind = 'human' GROUP BY label_name)
    SELECT c.mid, c.display_name, coalesce(b.boxes, 0) AS boxes, l.human_label
    FROM classes c LEFT JOIN b ON b.label_name = c.mid LEFT JOIN l ON l.label_name = c.mid
    WHERE b.boxes IS NOT NULL OR l.human_label IS NOT NULL
    ORDER BY boxes DESC, c.display_name""", (image_id, image_id))
