# Sourced by .ci/run: a throwaway PostgreSQL on 127.0.0.1 for the test that runs a sweep on an Optuna
# RDB storage. `pg_up` uses the machine's PostgreSQL, installing Debian's package first when it is
# missing and we are root (about 30 s); it exports NNEXP_TEST_POSTGRES_URL, or returns non-zero and the
# test is skipped with that reason. `pg_down` stops the server and removes its files.
pg_up() {
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$PGBIN" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends postgresql >/dev/null || return 1
    else
      echo "PostgreSQL is not installed and this user cannot install it" >&2
      return 1
    fi
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  PG_AS=()
  [ "$(id -u)" = 0 ] && PG_AS=(runuser -u postgres --)  # initdb and postgres refuse to run as root
  PGDIR=$(mktemp -d /tmp/nnexp-pg.XXXXXX) || return 1
  [ "$(id -u)" = 0 ] && chown postgres: "$PGDIR"
  "${PG_AS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --no-sync >/dev/null || return 1
  local port=""
  for _ in 1 2 3 4 5; do  # a random free port
    port=$(shuf -i 20000-60999 -n 1)
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { port=""; continue; }
    "${PG_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w -t 60 -o "-p $port -k $PGDIR \
      -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=100" \
      start >/dev/null && break
    port=""
  done
  [ -n "$port" ] || { cat "$PGDIR/log" >&2; return 1; }
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$port" -U postgres -d postgres \
    -c "CREATE ROLE nnexp LOGIN PASSWORD 'nnexp'" -c "CREATE DATABASE nnexp OWNER nnexp" >/dev/null || return 1
  export NNEXP_TEST_POSTGRES_URL="postgresql+psycopg://nnexp:nnexp@127.0.0.1:$port/nnexp"
  echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port for the storage test"
}

pg_down() {
  [ -n "${PGDIR:-}" ] || return 0
  "${PG_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$PGDIR"
  PGDIR=""
}
