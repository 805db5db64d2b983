"""Shared fixture: the real Open Images files in ../shared/openimages (or $OI_SHARED)."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_path(*parts: str) -> pathlib.Path:
  """Path to a real Open Images file; skips the calling test when it is absent."""
  # Absolute, so paths stay valid from another working directory or as symlink targets.
  root = pathlib.Path(os.environ.get("OI_SHARED", REPO_ROOT.parent / "shared" / "openimages"))
  path = root.resolve().joinpath(*parts)
  if not path.exists():
    pytest.skip(f"real Open Images file not available: {path}")
  return path


@pytest.fixture
def shared():
  """Returns shared_path, so tests can write `shared("hierarchy", "x.json")`."""
  return shared_path
