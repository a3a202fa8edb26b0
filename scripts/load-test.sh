#!/usr/bin/env bash
# Load test, run by hand (not in CI): wrk scrapes /metrics while the simulator
# injects a rotating set of faults and the exporter keeps refreshing. Reports
# failed scrapes, scrape latency and the exporter's RSS over the run.
#
#   scripts/load-test.sh [DURATION_SECONDS] [THINGS]     (defaults: 600 2000)
#
# Needs wrk and curl; builds the release binary if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-600}
things=${2:-2000}
bin=target/release/monogoto-exporter
[ -x "$bin" ] || cargo build --release --locked
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(free_port)
exp_port=$(free_port)
sim="http://127.0.0.1:$sim_port"
exporter="http://127.0.0.1:$exp_port"

"$bin" simulate --listen "127.0.0.1:$sim_port" --things "$things" --seed 7 --flap-period 30s \
    --log.level warn >"$work/sim.log" 2>&1 &
pids+=($!)
MONOGOTO_TOKEN=sim-static-token "$bin" --monogoto.url "$sim" --monogoto.discover \
    --poll.interval 5s --poll.timeout 1s --poll.retries 2 --monogoto.rate-limit 0 \
    --web.listen-address "127.0.0.1:$exp_port" --log.level warn >"$work/exporter.log" 2>&1 &
exporter_pid=$!
pids+=("$exporter_pid")

for _ in $(seq 100); do
    curl -fsS "$exporter/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$exporter/readyz" >/dev/null

# One fault after another, each for 30 s, then a clean 30 s, round and round.
faults=(
    'status=503,endpoint=status'
    'rate_limited=retry_after:1,endpoint=status'
    'hang,endpoint=status'
    'truncated_json,endpoint=status'
    'wrong_types,endpoint=status'
    'latency=300ms'
    'unauthorized,endpoint=status'
    'malformed_json,endpoint=status'
)
(
    while true; do
        for fault in "${faults[@]}"; do
            curl -fsS -X POST "$sim/_sim/faults" -d "\"$fault\"" -H 'content-type: application/json' >/dev/null
            sleep 30
            curl -fsS -X DELETE "$sim/_sim/faults" >/dev/null
            sleep 30
        done
    done
) &
pids+=($!)

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$exporter_pid/status"; }
(
    echo "seconds,rss_kib"
    start=$(date +%s)
    while kill -0 "$exporter_pid" 2>/dev/null; do
        echo "$(( $(date +%s) - start )),$(rss_kib)"
        sleep 10
    done
) >"$work/rss.csv" &
pids+=($!)

echo "load test: $things Things, $duration s of wrk on $exporter/metrics with rotating faults"
wrk -t2 -c8 -d"${duration}s" --latency -H 'Accept-Encoding: gzip' "$exporter/metrics" | tee "$work/wrk.txt"
sleep 1

metrics=$(curl -fsS "$exporter/metrics")
echo
echo "== exporter health after the run"
grep -E '^monogoto_(up|things_reported|refresh_errors_total|api_retries_total|api_rate_limited_total|parse_errors_total\{field="ThingName"\})' <<<"$metrics" || true
echo
echo "== RSS (KiB) every 10 s"
awk -F, 'NR > 1 { n++; v[n] = $2; if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
    END {
        printf "samples %d, first %d, min %d, max %d, last %d\n", n, v[1], min, max, v[n]
        half = int(n / 2); a = 0; b = 0
        for (i = 1; i <= half; i++) a += v[i]
        for (i = half + 1; i <= n; i++) b += v[i]
        if (half > 0) printf "mean of first half %d, of second half %d\n", a / half, b / (n - half)
    }' "$work/rss.csv"
echo
if grep -q 'Non-2xx\|Socket errors' "$work/wrk.txt"; then
    echo "FAILED SCRAPES: see the wrk output above"
    exit 1
fi
echo "no failed scrapes"
