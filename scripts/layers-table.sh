#!/usr/bin/env bash
# layers-table.sh: what each layer is and what it needs, in one place.
#
# Sourced by ./layers (the local stack) and bench/run.sh (the benchmark); a new layer joins
# both by adding its lines here. Functions only; no side effects.

# shellcheck disable=SC2034 # used by the scripts that source this file
LAYER_NAMES=(l0-single-db l1-connection-pooling l2-read-cache l3-read-replicas l4-db-sharding
    l5-multi-tier-cache l6-write-buffering l7-cqrs l8-polyglot-persistence
    l9-global-distributed l10-enterprise-grade)

# Prints the layer number for l1, 1 or l1-connection-pooling; fails for anything else.
layer_number_of() {
    local name=${1#l}
    name=${name%%-*}
    [[ $name =~ ^[0-9]+$ ]] && [ "$name" -le 10 ] || return 1
    [[ $1 != *-* ]] || [ "$1" = "${LAYER_NAMES[$name]}" ] || return 1
    echo "$name"
}

# The backends a layer needs, one word per instance, in start order.
layer_backends() {
    case $1 in
    0 | 1) echo "pg" ;;
    2 | 5 | 6) echo "pg redis" ;; # layer 6's Redis holds the write queue: see layer_redis_mode
    3) echo "pg standby standby redis" ;; # a primary and two hot standbys of it
    4) echo "pg pg pg redis" ;; # three shards
    7) echo "pg pg redis" ;; # the write database, the read database, the event stream
    8) echo "pg mongo redis" ;; # transactions, documents, the cache of both
    9) echo "pg pg pg redis redis redis" ;; # one PostgreSQL and one Redis per region
    10) echo "pg pg redis redis prometheus" ;; # two shards, the cache tier, the rate limits, metrics
    *) echo "" ;;
    esac
}

# The names of a layer's backends, in the order of layer_backends (./layers stop l4 shard1).
layer_backend_names() {
    case $1 in
    3) echo "primary replica1 replica2 redis" ;;
    4) echo "shard0 shard1 shard2 redis" ;;
    7) echo "write-db read-db redis" ;;
    9) echo "us-east eu-west asia-pac us-east eu-west asia-pac" ;; # a region: its PostgreSQL and Redis
    10) echo "shard1 shard2 redis redis-limits prometheus" ;;
    *)
        local kind names=()
        for kind in $(layer_backends "$1"); do
            case $kind in
            pg) names+=(db) ;;
            redis) names+=(redis) ;;
            mongo) names+=(mongo) ;;
            esac
        done
        echo "${names[*]}"
        ;;
    esac
}

# How a layer's Redis runs (scripts/stack.sh): "queue" (AOF, nothing but cache keys evicted)
# where Redis holds acknowledged writes, "limits" (nothing evicted) for layer 10's rate limits
# (its second Redis, INDEX 1: a budget evicted before it expires would be a reset limit), else
# "cache". Layer 7's stream carries events between the relay and the projector (the relay can
# publish them again from the outbox, but a lost stream means a replay, and l7:reads holds read
# counts not flushed yet).
layer_redis_mode() { # N [INDEX]
    case $1:${2:-0} in
    6:* | 7:*) echo "queue" ;;
    10:1) echo "limits" ;;
    *) echo "cache" ;;
    esac
}

# The programs a layer runs beside its server, started with the same settings (its workers).
layer_helpers() {
    case $1 in
    6) echo "l6-worker" ;;
    7) echo "l7-relay l7-projector" ;;
    9) echo "l9-links" ;; # the six WAN links (delay proxies) between the regions
    *) echo "" ;;
    esac
}

# A script run after the layer's backends start (./layers up, run, reset), with its settings.
layer_setup_script() {
    case $1 in
    9) echo "l9-global-distributed/replication.sh" ;;
    *) echo "" ;;
    esac
}

# Extra postgres options for a layer's clusters. Layer 9 replicates logically between its three
# (l9-global-distributed/README.md): wal_level=logical, room for 6 slots and senders, a 500 ms
# retry (the default 5 s delays each second subscription and every reconnect), and a cap on the
# WAL an orphaned slot may keep.
layer_pg_settings() {
    case $1 in
    9) echo "-c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10" \
        "-c wal_retrieve_retry_interval=500ms -c max_slot_wal_keep_size=1GB" ;;
    *) echo "" ;;
    esac
}

# Prints the layer's settings as export lines, given where its backends listen:
#   layer_env N PG_PORT REDIS_PORT API_PORT [MONGO_PORT]
# (instance i of a kind listens on its base port + i).
layer_env() {
    local n=$1 pg=$2 redis=$3 api=$4 mongo=${5:-}
    case $n in
    0 | 1 | 2 | 5 | 6 | 8) echo "export DATABASE_URL=postgresql://layers@127.0.0.1:$pg/layers" ;;
    esac
    case $n in
    3) # the primary on PG_PORT, standby i on PG_PORT + i
        echo "export PRIMARY_DATABASE_URL=postgresql://layers@127.0.0.1:$pg/layers"
        echo "export REPLICA_DATABASE_URL=postgresql://layers@127.0.0.1:$((pg + 1))/layers"
        echo "export REPLICA_DATABASE_URLS=postgresql://layers@127.0.0.1:$((pg + 1))/layers,postgresql://layers@127.0.0.1:$((pg + 2))/layers"
        ;;
    esac
    case $n in
    4) # shard i on PG_PORT + i; the server reads SHARD_URLS, SHARD_i_URL are for other tools
        local i urls=""
        for i in 0 1 2; do
            echo "export SHARD_${i}_URL=postgresql://layers@127.0.0.1:$((pg + i))/layers"
            urls+="${urls:+,}postgresql://layers@127.0.0.1:$((pg + i))/layers"
        done
        echo "export SHARD_URLS=$urls"
        ;;
    esac
    case $n in
    7) # the write database on PG_PORT, the read database on PG_PORT + 1
        echo "export WRITE_DB_URL=postgresql://layers@127.0.0.1:$pg/layers"
        echo "export READ_DB_URL=postgresql://layers@127.0.0.1:$((pg + 1))/layers"
        ;;
    esac
    case $n in
    2 | 3 | 4 | 5 | 6 | 7 | 8 | 10) echo "export REDIS_URL=redis://127.0.0.1:$redis/0" ;;
    esac
    case $n in
    10) # shard i on PG_PORT + i; the rate limits in a Redis of their own on REDIS_PORT + 1
        echo "export SHARD_URLS=postgresql://layers@127.0.0.1:$pg/layers,postgresql://layers@127.0.0.1:$((pg + 1))/layers"
        echo "export RATE_LIMIT_REDIS_URL=redis://127.0.0.1:$((redis + 1))/0"
        echo "export API_KEYS=$LAYER10_DEMO_KEY:read+write+admin"
        ;;
    esac
    case $n in
    8) echo "export MONGODB_URL=mongodb://127.0.0.1:$mongo/layers" ;;
    esac
    case $n in
    9) # region i: PostgreSQL on PG_PORT + i, Redis on REDIS_PORT + i; the WAN links (l9-links)
        # on PG_PORT + 3 + link, link = from * 2 + (to > from ? to - 1 : to)
        local i from to dbs="" caches="" links=""
        for i in 0 1 2; do
            dbs+="${dbs:+,}postgresql://layers@127.0.0.1:$((pg + i))/layers"
            caches+="${caches:+,}redis://127.0.0.1:$((redis + i))/0"
        done
        for from in 0 1 2; do
            for to in 0 1 2; do
                [ "$from" = "$to" ] && continue
                i=$((from * 2 + (to > from ? to - 1 : to)))
                links+="${links:+,}postgresql://layers@127.0.0.1:$((pg + 3 + i))/layers"
            done
        done
        echo "export REGION_DATABASE_URLS=$dbs"
        echo "export REGION_REDIS_URLS=$caches"
        echo "export REGION_LINK_URLS=$links"
        ;;
    esac
    echo "export PORT=$api"
    echo "export API_URL=http://127.0.0.1:$api"
}

# Layer 10's key on the local stack and in the benchmark (API_KEYS overrides it): a demo key,
# printed by ./layers run l10, never one to deploy.
LAYER10_DEMO_KEY=l10-demo-key-change-me

# The header a client sends to reach the layer's API (the benchmark's loadgen --header).
layer_client_header() {
    case $1 in
    10) echo "X-API-Key: $LAYER10_DEMO_KEY" ;;
    esac
}

# The layer's statistics endpoint, if it has one.
layer_stats_path() {
    case $1 in
    1) echo "/pool-stats" ;;
    2) echo "/cache-stats" ;;
    3 | 4 | 5 | 6 | 7 | 8 | 9 | 10) echo "/stats" ;;
    esac
}
