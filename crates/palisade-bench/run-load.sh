#!/usr/bin/env bash
# Load runs for BENCHMARKS.md: loopback only, bounded in time.
#   crates/palisade-bench/run-load.sh redis   # RedisStore vs redis-benchmark, same script
#   crates/palisade-bench/run-load.sh http    # axum: bare vs palisade vs tower_governor (wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p palisade-bench --bins
bin=target/release

redis_runs() {
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

case "${1:-all}" in
    redis) redis_runs ;;
    http) http_runs ;;
    all) redis_runs; http_runs ;;
esac
