#!/usr/bin/env bash
# stack.sh: start and stop the local databases the layers use (no Docker needed).
#
# One small function per backend kind. Used three ways:
#   - sourced by ./layers for the native stack (`./layers up l1`),
#   - executed by the black-box tests for their throwaway instances,
#   - executed by the benchmark harness.
#
#   bash scripts/stack.sh pg-start DIR PORT [postgres options, e.g. -c max_connections=700]
#   bash scripts/stack.sh pg-stop DIR
#   bash scripts/stack.sh pg-status DIR
#   bash scripts/stack.sh pg-standby-start PRIMARY_DIR PRIMARY_PORT DIR PORT SLOT [options]
#   bash scripts/stack.sh redis-start DIR PORT [cache|queue|queue-always|limits]
#   bash scripts/stack.sh redis-stop DIR
#   bash scripts/stack.sh mongo-install            (the stand-in MongoDB; needs the npm registry)
#   bash scripts/stack.sh mongo-start DIR PORT
#   bash scripts/stack.sh mongo-stop DIR
#   bash scripts/stack.sh prometheus-start DIR PORT CONFIG   (layer 10: Debian's prometheus)
#   bash scripts/stack.sh prometheus-stop DIR
#
# PostgreSQL: a cluster in DIR (created on first start with initdb), listening on
# 127.0.0.1:PORT only, trust authentication on loopback, with a non-superuser role `layers`
# owning a database `layers`: postgresql://layers@127.0.0.1:PORT/layers. initdb refuses to run
# as root, so as root the server runs as the `postgres` user (DIR must be reachable by it).
# Starting a running cluster and stopping a stopped one are no-ops. Every wait has a timeout.
#
# A hot standby (layer 3): a streaming replica of the primary in PRIMARY_DIR, cloned once with
# pg_basebackup (-R writes standby.signal and primary_conninfo, -X stream copies the WAL made
# meanwhile, -C -S creates the replication slot SLOT so the primary keeps the WAL the standby
# has not received yet, --checkpoint=fast so it does not wait minutes for a spread checkpoint).
# It connects as the role `replicator` (REPLICATION, created on the primary). Read-only; pg-stop
# stops it like any cluster, and pg-start DIR PORT starts it again.
#
# Redis runs in one of two modes. `cache` (the default): no persistence, LRU eviction of any key.
# `queue` (layer 6, which keeps acknowledged writes in Redis until they are committed): AOF on
# with `appendfsync everysec` (`queue-always`: fsync before each reply), and only keys with a
# TTL (cache entries) may be evicted, never the stream. A restart without MODE keeps the mode
# DIR was started with.
#
# MongoDB (layer 8): Debian ships no MongoDB server, so the native stack runs a stand-in that
# speaks its wire protocol: CongoDB, inside @push.rocks/smartmongo 2.2.0 on Node.js (Debian's).
# mongo-install puts it into CONGODB_HOME (default .state/congodb, git-ignored) the one way that
# works: a package.json pinning its six dependencies, then the package's own tarball from
# `npm pack`, checked against the SHA-256 below and unpacked by hand (a plain `npm install` of it
# fails on dependencies it lacks). mongo-start runs scripts/congodb.mjs on 127.0.0.1:PORT with
# its pid and log in DIR; data lives in memory only (a restart starts empty). Limits: see
# l8-polyglot-persistence/README.md.
set -euo pipefail

STACK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONGODB_HOME=${CONGODB_HOME:-$STACK_ROOT/.state/congodb}
CONGODB_PACKAGE=@push.rocks/smartmongo@2.2.0
CONGODB_SHA256=1f9915eb73859a62183e589a699f58b9fd006c972deb5ce6f61fa945defbc22e

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

die() {
    echo "stack: $*" >&2
    exit 1
}

# Runs a command as the PostgreSQL owner: `postgres` when we are root, else ourselves.
as_pg_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_running() {
    [ -f "$1/postmaster.pid" ] && as_pg_owner "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

pg_start() {
    local dir=$1 port=$2
    shift 2
    [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 is not installed (run ./layers deps)"
    if pg_running "$dir"; then
        return 0
    fi
    if port_in_use "$port"; then
        die "port $port is already in use by another program; cannot start PostgreSQL in $dir"
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        if [ "$(id -u)" = 0 ]; then
            chown postgres: "$dir"
            runuser -u postgres -- test -w "$dir" ||
                die "user postgres cannot write $dir (a parent directory is not reachable)"
        fi
        chmod 700 "$dir"
        as_pg_owner "$PG_BIN/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
            --no-sync >"$dir.initdb.log" 2>&1 || {
            cat "$dir.initdb.log" >&2
            die "initdb failed in $dir"
        }
        rm -f "$dir.initdb.log"
    fi
    # Sockets in DIR itself would make the path too long for some temp dirs; TCP only.
    local opts="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' $*"
    as_pg_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -o "$opts" -w -t 60 start \
        >/dev/null || {
        tail -n 20 "$dir/server.log" >&2 || true
        die "PostgreSQL did not start in $dir (log above)"
    }
    as_pg_owner "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE layers LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'layers')\gexec
SELECT 'CREATE DATABASE layers OWNER layers' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'layers')\gexec
SQL
}

# MODE: fast (the default: a clean shutdown with a checkpoint) or immediate (no checkpoint, for a
# throwaway cluster: the benchmark's, deleted right after).
pg_stop() { # DIR [MODE]
    local dir=$1 mode=${2:-fast}
    if pg_running "$dir"; then
        as_pg_owner "$PG_BIN/pg_ctl" -D "$dir" -m "$mode" -w -t 60 stop >/dev/null
    fi
}

pg_status() {
    if pg_running "$1"; then echo running; else echo stopped; fi
}

# Adds the replication role and pg_hba entry to a running primary (idempotent).
pg_allow_replication() {
    local dir=$1 port=$2 hba="$1/pg_hba.conf"
    as_pg_owner "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE replicator LOGIN REPLICATION' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator')\gexec
SQL
    if ! as_pg_owner grep -q '^host replication replicator 127.0.0.1/32' "$hba"; then
        echo 'host replication replicator 127.0.0.1/32 trust' | as_pg_owner tee -a "$hba" >/dev/null
        as_pg_owner "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
            -c 'SELECT pg_reload_conf()' >/dev/null
    fi
}

pg_standby_start() {
    local primary_dir=$1 primary_port=$2 dir=$3 port=$4 slot=$5
    shift 5
    if pg_running "$dir"; then
        return 0
    fi
    if port_in_use "$port"; then
        die "port $port is already in use by another program; cannot start PostgreSQL in $dir"
    fi
    pg_running "$primary_dir" || die "the primary in $primary_dir is not running"
    if [ ! -f "$dir/PG_VERSION" ]; then
        pg_allow_replication "$primary_dir" "$primary_port"
        # A slot left by an earlier clone of this standby would make -C fail: drop it.
        as_pg_owner "$PG_BIN/psql" -q -h 127.0.0.1 -p "$primary_port" -U postgres -d postgres \
            -v ON_ERROR_STOP=1 -v slot="$slot" >/dev/null <<'SQL'
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = :'slot' AND NOT active;
SQL
        mkdir -p "$dir"
        if [ "$(id -u)" = 0 ]; then
            chown postgres: "$dir"
        fi
        chmod 700 "$dir"
        as_pg_owner "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U replicator \
            -D "$dir" -R -X stream -S "$slot" -C --checkpoint=fast --no-sync >"$dir.basebackup.log" 2>&1 || {
            cat "$dir.basebackup.log" >&2
            die "pg_basebackup from port $primary_port into $dir failed"
        }
        rm -f "$dir.basebackup.log" "$dir/server.log" "$dir/postmaster.opts"
    fi
    local opts="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' $*"
    as_pg_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -o "$opts" -w -t 60 start \
        >/dev/null || {
        tail -n 20 "$dir/server.log" >&2 || true
        die "the standby did not start in $dir (log above)"
    }
}

redis_start() {
    local dir=$1 port=$2 mode=${3:-}
    [ -n "$mode" ] || mode=$(cat "$1/mode" 2>/dev/null || echo cache)
    case $mode in
    cache | queue | queue-always | limits) ;;
    *) die "unknown Redis mode '$mode' (cache, queue, queue-always or limits)" ;;
    esac
    command -v redis-server >/dev/null || die "redis-server is not installed (run ./layers deps)"
    mkdir -p "$dir"
    if [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
        return 0
    fi
    if port_in_use "$port"; then
        die "port $port is already in use by another program; cannot start Redis in $dir"
    fi
    local persistence="appendonly no" policy=allkeys-lru
    case $mode in
    queue) persistence=$'appendonly yes\nappendfsync everysec'; policy=volatile-lru ;;
    queue-always) persistence=$'appendonly yes\nappendfsync always'; policy=volatile-lru ;;
    limits) policy=noeviction ;;
    esac
    echo "$mode" >"$dir/mode"
    # cache: no persistence, a memory cap with LRU eviction. queue: AOF, evict cache keys only.
    # limits: no persistence, nothing evicted (full: writes fail, and layer 10's rate limiter
    # falls back to its local limit; evicting a budget would silently reset it).
    cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
port $port
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
save ""
$persistence
maxmemory 256mb
maxmemory-policy $policy
CONF
    redis-server "$dir/redis.conf"
    local _
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "Redis did not start in $dir (see $dir/redis.log)"
}

redis_stop() {
    local dir=$1 pid
    [ -f "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        local _
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
    fi
    rm -f "$dir/redis.pid"
}

# True when the stand-in MongoDB is installed (the tarball that was checked, unpacked).
mongo_installed() {
    [ -f "$CONGODB_HOME/installed-$CONGODB_SHA256" ]
}

mongo_install() {
    mongo_installed && return 0
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        die "Node.js and npm are not installed (run ./layers deps)"
    fi
    local home=$CONGODB_HOME tarball sum
    mkdir -p "$home"
    cat >"$home/package.json" <<'JSON'
{
  "name": "congodb-stand-in",
  "private": true,
  "description": "The stand-in MongoDB of the native stack (layer 8): CongoDB's dependencies, pinned",
  "dependencies": {
    "bson": "6.10.4",
    "mingo": "7.2.7",
    "@push.rocks/smartfs": "1.5.0",
    "@push.rocks/smartpath": "5.1.0",
    "@push.rocks/smartpromise": "4.2.3",
    "@push.rocks/smartrx": "3.0.10"
  }
}
JSON
    (cd "$home" && npm install --no-audit --no-fund --loglevel=error >/dev/null) ||
        die "npm install of CongoDB's dependencies failed in $home"
    tarball=$(cd "$home" && npm pack "$CONGODB_PACKAGE" --loglevel=error 2>/dev/null | tail -n 1)
    [ -n "$tarball" ] || die "npm pack $CONGODB_PACKAGE failed"
    [ -f "$home/$tarball" ] || die "npm pack $CONGODB_PACKAGE made no $tarball"
    sum=$(sha256sum "$home/$tarball" | cut -d' ' -f1)
    [ "$sum" = "$CONGODB_SHA256" ] ||
        die "$tarball has SHA-256 $sum, expected $CONGODB_SHA256: not installing it"
    rm -rf "$home/node_modules/@push.rocks/smartmongo"
    mkdir -p "$home/node_modules/@push.rocks/smartmongo"
    tar -xzf "$home/$tarball" -C "$home/node_modules/@push.rocks/smartmongo" --strip-components=1
    rm -f "$home/$tarball"
    touch "$home/installed-$CONGODB_SHA256"
}

mongo_running() {
    [ -f "$1/congodb.pid" ] && kill -0 "$(cat "$1/congodb.pid")" 2>/dev/null
}

mongo_start() {
    local dir=$1 port=$2 _
    mongo_installed || die "the stand-in MongoDB is not installed (run ./layers deps)"
    mkdir -p "$dir"
    mongo_running "$dir" && return 0
    if port_in_use "$port"; then
        die "port $port is already in use by another program; cannot start MongoDB in $dir"
    fi
    setsid node "$STACK_ROOT/scripts/congodb.mjs" "$CONGODB_HOME" "$port" \
        >>"$dir/congodb.log" 2>&1 </dev/null &
    echo $! >"$dir/congodb.pid"
    for _ in $(seq 1 200); do
        port_in_use "$port" && return 0
        mongo_running "$dir" || break
        sleep 0.05
    done
    tail -n 20 "$dir/congodb.log" >&2 || true
    die "the stand-in MongoDB did not start in $dir (log above)"
}

# Stops the process whose pid is in PIDFILE (TERM, then KILL after 5 s) and removes the file.
pidfile_stop() {
    local file=$1 pid _
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$file"
}

mongo_stop() {
    pidfile_stop "$1/congodb.pid"
}

# Prometheus (layer 10): Debian's package, as an unprivileged process on 127.0.0.1:PORT with
# the given scrape configuration, its time series in DIR/data, its pid and log in DIR.
prometheus_start() {
    local dir=$1 port=$2 config=$3 _
    command -v prometheus >/dev/null || die "prometheus is not installed (run ./layers deps)"
    mkdir -p "$dir/data"
    if [ -f "$dir/prometheus.pid" ] && kill -0 "$(cat "$dir/prometheus.pid")" 2>/dev/null; then
        return 0
    fi
    port_in_use "$port" && die "port $port is already in use; cannot start Prometheus in $dir"
    setsid prometheus --config.file="$config" --storage.tsdb.path="$dir/data" \
        --web.listen-address="127.0.0.1:$port" >>"$dir/prometheus.log" 2>&1 </dev/null &
    echo $! >"$dir/prometheus.pid"
    for _ in $(seq 1 200); do
        port_in_use "$port" && return 0
        sleep 0.05
    done
    tail -n 20 "$dir/prometheus.log" >&2 || true
    die "Prometheus did not start in $dir (log above)"
}

prometheus_stop() {
    pidfile_stop "$1/prometheus.pid"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cmd=${1:-}
    shift || true
    case $cmd in
    pg-start) [ $# -ge 2 ] || die "usage: pg-start DIR PORT [postgres options]"; pg_start "$@" ;;
    pg-stop) [ $# -eq 1 ] || die "usage: pg-stop DIR"; pg_stop "$1" ;;
    pg-status) [ $# -eq 1 ] || die "usage: pg-status DIR"; pg_status "$1" ;;
    pg-standby-start)
        [ $# -ge 5 ] || die "usage: pg-standby-start PRIMARY_DIR PRIMARY_PORT DIR PORT SLOT [options]"
        pg_standby_start "$@"
        ;;
    redis-start) [[ $# -ge 2 && $# -le 3 ]] || die "usage: redis-start DIR PORT [cache|queue|queue-always|limits]"; redis_start "$@" ;;
    redis-stop) [ $# -eq 1 ] || die "usage: redis-stop DIR"; redis_stop "$1" ;;
    mongo-install) [ $# -eq 0 ] || die "usage: mongo-install"; mongo_install ;;
    mongo-start) [ $# -eq 2 ] || die "usage: mongo-start DIR PORT"; mongo_start "$@" ;;
    mongo-stop) [ $# -eq 1 ] || die "usage: mongo-stop DIR"; mongo_stop "$1" ;;
    prometheus-start) [ $# -eq 3 ] || die "usage: prometheus-start DIR PORT CONFIG"; prometheus_start "$@" ;;
    prometheus-stop) [ $# -eq 1 ] || die "usage: prometheus-stop DIR"; prometheus_stop "$1" ;;
    *) die "usage: stack.sh pg-start|pg-stop|pg-status|pg-standby-start|redis-start|redis-stop|mongo-install|mongo-start|mongo-stop|prometheus-start|prometheus-stop ..." ;;
    esac
fi
