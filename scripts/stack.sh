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
#   bash scripts/stack.sh redis-start DIR PORT
#   bash scripts/stack.sh redis-stop DIR
#
# PostgreSQL: a cluster in DIR (created on first start with initdb), listening on
# 127.0.0.1:PORT only, trust authentication on loopback, with a non-superuser role `layers`
# owning a database `layers`: postgresql://layers@127.0.0.1:PORT/layers. initdb refuses to run
# as root, so as root the server runs as the `postgres` user (DIR must be reachable by it).
# Starting a running cluster and stopping a stopped one are no-ops. Every wait has a timeout.
set -euo pipefail

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

pg_stop() {
    local dir=$1
    if pg_running "$dir"; then
        as_pg_owner "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
    fi
}

pg_status() {
    if pg_running "$1"; then echo running; else echo stopped; fi
}

redis_start() {
    local dir=$1 port=$2
    command -v redis-server >/dev/null || die "redis-server is not installed (run ./layers deps)"
    mkdir -p "$dir"
    if [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
        return 0
    fi
    if port_in_use "$port"; then
        die "port $port is already in use by another program; cannot start Redis in $dir"
    fi
    # A cache: no persistence, a memory cap with LRU eviction.
    cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
port $port
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
save ""
appendonly no
maxmemory 256mb
maxmemory-policy allkeys-lru
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

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cmd=${1:-}
    shift || true
    case $cmd in
    pg-start) [ $# -ge 2 ] || die "usage: pg-start DIR PORT [postgres options]"; pg_start "$@" ;;
    pg-stop) [ $# -eq 1 ] || die "usage: pg-stop DIR"; pg_stop "$1" ;;
    pg-status) [ $# -eq 1 ] || die "usage: pg-status DIR"; pg_status "$1" ;;
    redis-start) [ $# -eq 2 ] || die "usage: redis-start DIR PORT"; redis_start "$1" "$2" ;;
    redis-stop) [ $# -eq 1 ] || die "usage: redis-stop DIR"; redis_stop "$1" ;;
    *) die "usage: stack.sh pg-start|pg-stop|pg-status|redis-start|redis-stop ..." ;;
    esac
fi
