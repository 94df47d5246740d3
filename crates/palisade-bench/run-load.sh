#!/usr/bin/env bash
# Load runs for BENCHMARKS.md: loopback only, bounded in time.
#   crates/palisade-bench/run-load.sh redis   # RedisStore vs redis-benchmark, same script
#   crates/palisade-bench/run-load.sh http    # axum: bare vs palisade vs tower_governor (wrk)
#   crates/palisade-bench/run-load.sh cache   # cached hits: edge-proxy vs nginx proxy_cache (wrk)
#   crates/palisade-bench/run-load.sh fleet-misses  # 999 concurrent misses over 3 edge-proxies on Redis
#   crates/palisade-bench/run-load.sh outbox  # relays, latency, inbox vs PostgreSQL and JetStream alone
#   crates/palisade-bench/run-load.sh eventstore  # commands, snapshot loads, projection catch-up
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release

redis_runs() {
    cargo build --release -q -p palisade-bench --bins
    local script=crates/palisade-ratelimit/src/scripts/check.lua
    local sha
    sha=$(redis-cli -h 127.0.0.1 SCRIPT LOAD "$(cat "$script")")
    local rounds=${ROUNDS:-3}
    # Interleaved rounds: this kind of machine drifts, so compare within a round.
    for round in $(seq 1 "$rounds"); do
        for c in 1 8 64 256; do
            local n=$((c == 1 ? 20000 : (c == 8 ? 80000 : 150000)))
            # The same script, one token-bucket limit, random keys among 100 000, as
            # RedisStore sends it.
            local rb ours
            rb=$(redis-benchmark -h 127.0.0.1 -c "$c" -n "$n" -r 100000 -q \
                EVALSHA "$sha" 1 "bench:ratelimit:load.load.tb:{key:__rand_int__}" \
                0 -1 1 1 1 1000000000 1000000000 | grep -oE '[0-9.]+ requests per second' | cut -d' ' -f1)
            ours=$("$bin/redis_load" 4 "$c" | sed -E 's/.*ops_per_sec=//')
            echo "round=$round tasks=$c redis_benchmark=$rb palisade=$ours ratio=$(python3 -c "print(round($ours/$rb, 3))")"
        done
    done
}

http_runs() {
    cargo build --release -q -p palisade-bench --bins
    command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
    local rounds=${ROUNDS:-3}
    for round in $(seq 1 "$rounds"); do
        for variant in bare palisade governor governor-headers; do
            "$bin/http_server" "$variant" 3100 &
            local pid=$!
            sleep 0.5
            # Server CPU time (user + system, clock ticks) spent serving the run.
            local before after
            before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            wrk -t1 -c64 -d"${SECONDS_PER_RUN:-10}"s --latency http://127.0.0.1:3100/ > /tmp/wrk-$variant.txt
            after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            kill "$pid"; wait "$pid" 2>/dev/null || true
            local rps p99 requests cpu_us
            rps=$(grep 'Requests/sec' /tmp/wrk-$variant.txt | awk '{print $2}')
            p99=$(grep ' 99%' /tmp/wrk-$variant.txt | awk '{print $2}')
            requests=$(grep 'requests in' /tmp/wrk-$variant.txt | awk '{print $1}')
            cpu_us=$(python3 -c "print(round(($after - $before) * 1e6 / $(getconf CLK_TCK) / $requests, 2))")
            echo "round=$round variant=$variant req_per_sec=$rps p99=$p99 server_cpu_us_per_req=$cpu_us"
        done
    done
}

cache_runs() {
    command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
    command -v nginx >/dev/null || { echo "nginx missing: apt-get install nginx-light" >&2; exit 1; }
    cargo build --release -q -p palisade-examples --bin edge-proxy
    local conf=crates/palisade-bench/cache objects=/tmp/palisade-bench-objects
    mkdir -p "$objects" /tmp/palisade-bench-nginx-cache
    head -c 1024 /dev/urandom > "$objects/1k"
    head -c 102400 /dev/urandom > "$objects/100k"
    # Daemons must not hold this script's stdout open (a pipe reader would wait forever).
    nginx -c "$PWD/$conf/origin.conf" > /dev/null 2>&1 < /dev/null
    EDGE_UPSTREAM=http://127.0.0.1:3201 EDGE_ADDR=127.0.0.1:3202 EDGE_ADMIN_ADDR=127.0.0.1:3204 \
        RUST_LOG=error target/release/edge-proxy > /dev/null 2>&1 < /dev/null &
    EDGE_PID=$!
    nginx -c "$PWD/$conf/nginx-cache.conf" > /dev/null 2>&1 < /dev/null
    CONF_DIR="$PWD/$conf"
    trap 'kill $EDGE_PID 2>/dev/null; nginx -c "$CONF_DIR/nginx-cache.conf" -s stop 2>/dev/null; nginx -c "$CONF_DIR/origin.conf" -s stop 2>/dev/null' EXIT
    sleep 1
    for port in 3202 3203; do for object in 1k 100k; do
        curl -s -o /dev/null "http://127.0.0.1:$port/$object"   # store it
    done; done
    local rounds=${ROUNDS:-3} seconds=${SECONDS_PER_RUN:-8}
    for round in $(seq 1 "$rounds"); do
        for object in 1k 100k; do
            for port in 3202 3203; do
                local name; name=$([ $port = 3202 ] && echo edge-proxy || echo nginx)
                local rps
                rps=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$port/$object" | awk '/Requests\/sec/ {print $2}')
                echo "round=$round object=$object server=$name req_per_sec=$rps"
            done
        done
    done
}

fleet_miss_runs() {
    command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
    cargo build --release -q -p palisade-examples --bin edge-proxy
    local rounds=${ROUNDS:-3}
    for round in $(seq 1 "$rounds"); do
        python3 crates/palisade-bench/cache/slow_origin.py 3301 > /dev/null 2>&1 < /dev/null &
        local origin=$!
        local prefix="bench-fleet-$round-$RANDOM" pids=()
        for i in 0 1 2; do
            REDIS_URL=redis://127.0.0.1:6379 EDGE_REDIS_PREFIX="$prefix" EDGE_UPSTREAM=http://127.0.0.1:3301 \
                EDGE_ADDR=127.0.0.1:$((3310 + i)) EDGE_ADMIN_ADDR=127.0.0.1:$((3320 + i)) RUST_LOG=error \
                target/release/edge-proxy > /dev/null 2>&1 < /dev/null &
            pids+=($!)
        done
        sleep 1
        # 333 connections on each instance, all for one key (the same Host on all three).
        for i in 0 1 2; do
            wrk -t1 -c333 -d3s -H "Host: shop.example" "http://127.0.0.1:$((3310 + i))/hot" > /dev/null 2>&1 &
        done
        wait "$(jobs -p | tail -1)" 2>/dev/null || true
        sleep 4
        echo "round=$round concurrent_misses=999 instances=3 origin_requests=$(curl -s http://127.0.0.1:3301/count)"
        kill "${pids[@]}" "$origin" 2>/dev/null || true
        wait 2>/dev/null || true
    done
}

# The outbox against the machine's limits, interleaved per round: PostgreSQL insert+commit and
# JetStream publish alone, then relays (1 and 4) draining 20 000 events, commit-to-broker
# latency at 200 and 1000 events/s, and the inbox's cost per message.
outbox_runs() {
    cargo build --release -q -p palisade-bench --bin outbox_load
    local rounds=${ROUNDS:-3}
    for round in $(seq 1 "$rounds"); do
        echo "round=$round $("$bin/outbox_load" pg 4000 8)"
        echo "round=$round $("$bin/outbox_load" jetstream 20000)"
        echo "round=$round $("$bin/outbox_load" relay 20000 1)"
        echo "round=$round $("$bin/outbox_load" relay 20000 4)"
        echo "round=$round $("$bin/outbox_load" latency 200 10)"
        echo "round=$round $("$bin/outbox_load" latency 1000 10)"
        echo "round=$round $("$bin/outbox_load" inbox 2000)"
    done
}

# The event store: commands (load + decide + append) on 1 and 16 streams, loading a
# 10 000-event aggregate with and without a snapshot, a projection catching up on 20 000.
eventstore_runs() {
    cargo build --release -q -p palisade-bench --bin eventstore_load
    local rounds=${ROUNDS:-2}
    for round in $(seq 1 "$rounds"); do
        echo "round=$round $("$bin/eventstore_load" append 1 4000)"
        echo "round=$round $("$bin/eventstore_load" append 16 4000)"
        echo "round=$round $("$bin/eventstore_load" load 10000)"
        echo "round=$round $("$bin/eventstore_load" catchup 20000)"
    done
}

# Saga step overhead: 500 three-step sagas against calling the steps directly.
saga_runs() {
    cargo build --release -q -p palisade-bench --bin saga_load
    for round in $(seq 1 "${ROUNDS:-2}"); do
        echo "round=$round $("$bin/saga_load" 500)"
    done
}

case "${1:-all}" in
    redis) redis_runs ;;
    http) http_runs ;;
    cache) cache_runs ;;
    fleet-misses) fleet_miss_runs ;;
    outbox) outbox_runs ;;
    eventstore) eventstore_runs ;;
    saga) saga_runs ;;
    all) redis_runs; http_runs; cache_runs ;;
esac
