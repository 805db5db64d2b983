#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for the oi-to-sql tests, its benchmark and .ci/run.
#
#   eval "$(tests/tools/postgres_server.sh start)"   # sets OI_TEST_POSTGRES_DSN and OI_TEST_POSTGRES_DIR
#   tests/tools/postgres_server.sh stop "$OI_TEST_POSTGRES_DIR"
#
# Uses the newest server of the Debian package (/usr/lib/postgresql/<version>/bin). PostgreSQL refuses
# to run as root, so as root the server runs as the `postgres` user the package creates (or `oi_pg`,
# created here when that is absent). The data directory is a fresh folder under ${TMPDIR:-/tmp}, the
# server listens on 127.0.0.1 only, on a free port, and trusts local connections (user `oi`).
# Exit status 2: no server binaries (the caller decides whether that is a skip).
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "postgres_server.sh: no PostgreSQL server (apt-get install -y postgresql)" >&2
  exit 2
fi

run_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$owner" -- "$@"
  else
    "$@"
  fi
}

owner=$(id -un)
if [ "$(id -u)" = 0 ]; then
  owner=postgres
  if ! id -u "$owner" >/dev/null 2>&1; then
    owner=oi_pg
    id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home "$owner"
  fi
fi

case "${1:-}" in
  start)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/oi-postgres.XXXXXX")
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown "$owner" "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    run_as_owner "$bin/initdb" -D "$dir/data" -U oi --auth=trust -E UTF8 --no-locale \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    run_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "export OI_TEST_POSTGRES_DSN=postgresql://oi@127.0.0.1:$port/postgres"
    echo "export OI_TEST_POSTGRES_DIR=$dir"
    ;;
  stop)
    dir=${2:?usage: postgres_server.sh stop DIR}
    if [ -d "$dir/data" ]; then
      run_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: postgres_server.sh start | stop DIR" >&2
    exit 64
    ;;
esac
