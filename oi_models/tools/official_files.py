"""The official Open Images files of each release, with the sizes and checksums the Open Images team
published, so a download can be verified before anything reads it.

The facts live in `data/official_files.tsv` (package data): release(s), file name, bytes, md5, sha256
(hex; `-` where not published), URL. They cover the annotation files of V4 (2018_04), V5, V6 and the
Challenge 2019 release, and the image tar files (release `images`). V6 reuses V5's validation and test
files and the 2018_04 image-metadata files; those rows list every release they belong to.
Files without published checksums (the V6/V7 image-level labels, the hierarchy JSON) are not listed.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.resources
import io

_DATA = "official_files.tsv"


@dataclasses.dataclass(frozen=True)
class OfficialFile:
  """One published file: where it is and what its bytes must be."""

  name: str
  releases: tuple[str, ...]
  size: int
  md5: str | None  # hex
  sha256: str | None  # hex
  url: str


@functools.lru_cache(maxsize=None)
def all_files() -> tuple[OfficialFile, ...]:
  text = importlib.resources.files("oi_models.tools").joinpath("data", _DATA).read_text("utf-8")
  rows = csv.DictReader(io.StringIO("".join(line for line in text.splitlines(keepends=True)
                                            if not line.startswith("#"))), delimiter="\t")
  return tuple(OfficialFile(name=r["name"], releases=tuple(r["releases"].split(",")),
                            size=int(r["size"]), md5=None if r["md5"] == "-" else r["md5"],
                            sha256=None if r["sha256"] == "-" else r["sha256"], url=r["url"])
               for r in rows)


def releases() -> list[str]:
  """Release names with published files, in first-seen order."""
  return list(dict.fromkeys(r for f in all_files() for r in f.releases))


def for_release(release: str, names=None) -> list[OfficialFile]:
  """The files of `release` (all, or those named in `names`); unknown names are an error."""
  if release not in releases():
    raise ValueError(f"no published files for release {release!r}; known: {releases()}")
  files = [f for f in all_files() if release in f.releases]
  if names:
    by_name = {f.name: f for f in files}
    unknown = [n for n in names if n not in by_name]
    if unknown:
      raise ValueError(f"release {release} has no published file {unknown}; it has: "
                       f"{sorted(by_name)}")
    files = [by_name[n] for n in names]
  return files
