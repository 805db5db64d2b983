"""A real PostgreSQL server for the oi-to-sql tests: $OI_TEST_POSTGRES_DSN (set by .ci/run), or one
started here with tests/tools/postgres_server.sh (as .ci/run does) and stopped at the end."""

import os
import pathlib
import subprocess
import uuid

import pytest

SCRIPT = pathlib.Path(__file__).with_name("postgres_server.sh")


@pytest.fixture(scope="session")
def postgres_server():
  """The DSN of a server's `postgres` database; skips (with the reason) only if none can start."""
  dsn = os.environ.get("OI_TEST_POSTGRES_DSN")
  if dsn:
    yield dsn
    return
  started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True,
                           timeout=120)
  if started.returncode != 0:
    pytest.skip(f"no PostgreSQL server could be started: {started.stderr.strip()[-500:]}")
  env = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.split("\n")
             if line.startswith("export "))
  try:
    yield env["OI_TEST_POSTGRES_DSN"]
  finally:
    subprocess.run(["bash", str(SCRIPT), "stop", env["OI_TEST_POSTGRES_DIR"]], timeout=120)


@pytest.fixture
def postgres_dsn(postgres_server):
  """A fresh, empty database on the server, dropped after the test."""
  import psycopg  # pylint: disable=g-import-not-at-top
  name = f"oi_test_{uuid.uuid4().hex[:12]}"
  with psycopg.connect(postgres_server, autocommit=True) as admin:
    admin.execute(f"CREATE DATABASE {name}")
  yield postgres_server.rsplit("/", 1)[0] + "/" + name
  with psycopg.connect(postgres_server, autocommit=True) as admin:
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
