# Sourced by .ci/run: a throwaway PostgreSQL cluster for the tests, on a loopback port.
#
# Installs the distribution's package if PostgreSQL is missing, runs initdb and
# pg_ctl as the `postgres` user (they refuse to run as root), exports
# AGENT_RUNTIME_TEST_POSTGRES (the DSN the tests read) and stops the cluster when
# the calling shell exits.

pg_bin() {
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && { echo "$dir"; return; }
    done
    command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
}

PG_BIN="$(pg_bin || true)"
if [ -z "$PG_BIN" ]; then
    echo "ci: installing PostgreSQL" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    PG_BIN="$(pg_bin)"
fi

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}

PG_DATA="$(mktemp -d /tmp/agent-runtime-pg.XXXXXX)"
[ "$(id -u)" = 0 ] && chown postgres "$PG_DATA"
PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_postgres "'$PG_BIN/initdb' -D '$PG_DATA/data' -A trust -U postgres --no-sync -E UTF8" >/dev/null
as_postgres "'$PG_BIN/pg_ctl' -D '$PG_DATA/data' -l '$PG_DATA/log' -w -o \"-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c fsync=off\" start" >/dev/null

stop_postgres() {
    as_postgres "'$PG_BIN/pg_ctl' -D '$PG_DATA/data' -m immediate -w stop" >/dev/null 2>&1 || true
    rm -rf "$PG_DATA"
}
trap stop_postgres EXIT

export AGENT_RUNTIME_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
echo "ci: PostgreSQL on 127.0.0.1:$PG_PORT" >&2
