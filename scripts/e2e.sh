#!/usr/bin/env bash
# End-to-end test of the alerting pipeline, on 127.0.0.1 only:
#
#   simulator ──► exporter ──► Prometheus (the shipped rules, short `for:`) ──► Alertmanager ──► webhook
#
# 1. static checks: promtool check/test of the rules, promtool check config,
#    amtool check-config and the severity routing of deploy/alertmanager;
# 2. builds the exporter (`cargo build --locked`, debug) and starts the simulator
#    (20 Things, seed 1, a flap period of 1h so only the Thing we touch changes),
#    the exporter (polling every 2s, its state under --storage.path, so that the
#    storage metrics, their alert and dashboard panels have data), an
#    Alertmanager, a Prometheus scraping and evaluating every second, and a
#    webhook receiver;
# 3. disconnects an ACTIVE connected Thing (and a TEST_ACTIVE one) through the
#    simulator's control API, waits for the firing MonogotoThingDisconnected of
#    the ACTIVE one at the webhook and checks its labels and annotations, checks
#    the TEST_ACTIVE one stays silent, reconnects, waits for the resolved one;
# 4. checks every rule is loaded and healthy against the real data, every
#    recording rule has data, no exporter-health alert fired, and, when
#    scripts/e2e/check_dashboards.py exists, every dashboard query returns data.
#
# Needs: cargo, curl, python3, and promtool, prometheus, amtool and
# alertmanager (Debian: apt-get install prometheus prometheus-alertmanager).
# Environment: E2E_WAIT (seconds each wait may take, default 60), E2E_KEEP=1
# keeps the temporary directory (logs, configs, notifications) for a look,
# PROMETHEUS, ALERTMANAGER (the binaries to use).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
harness e2e "${E2E_WAIT:-60}" "${E2E_KEEP:-}"

helper() { python3 "$repo/scripts/e2e/e2e.py" "$@"; }

prometheus=${PROMETHEUS:-prometheus}
if [ -z "${ALERTMANAGER:-}" ]; then
    if command -v prometheus-alertmanager >/dev/null 2>&1; then
        ALERTMANAGER="prometheus-alertmanager"
    else
        ALERTMANAGER=alertmanager
    fi
fi
alertmanager=$ALERTMANAGER
need cargo "install Rust"
need curl "apt-get install curl"
need python3 "apt-get install python3"
need promtool "apt-get install prometheus"
need "$prometheus" "apt-get install prometheus"
need amtool "apt-get install prometheus-alertmanager"
need "$alertmanager" "apt-get install prometheus-alertmanager"

rules=deploy/prometheus/monogoto.rules.yml
am_config=deploy/alertmanager/alertmanager.yml

# --- 1. static checks -----------------------------------------------------------
log "static checks"
promtool check rules "$rules" >/dev/null || fail "promtool check rules $rules"
promtool test rules deploy/prometheus/tests/*.yml >/dev/null ||
    fail "promtool test rules deploy/prometheus/tests/*.yml (run it for details)"
promtool check config deploy/prometheus/prometheus.yml >/dev/null ||
    fail "promtool check config deploy/prometheus/prometheus.yml"
amtool check-config "$am_config" >/dev/null || fail "amtool check-config $am_config"
for route in severity=critical:pager severity=warning:chat severity=info:chat; do
    amtool config routes test --config.file="$am_config" --verify.receivers="${route#*:}" \
        "${route%%:*}" >/dev/null 2>&1 ||
        fail "$am_config does not route ${route%%:*} to ${route#*:}"
done
log "ok: rules, rule unit tests, Prometheus config, Alertmanager config and routes"

# --- 2. build and start everything ------------------------------------------------
build_exporter

tmp=$(mktemp -d "${TMPDIR:-/tmp}/monogoto-e2e.XXXXXX")
mkdir -p "$tmp/prometheus-data" "$tmp/alertmanager-data" "$tmp/exporter-storage"

# Four distinct free ports, chosen by the OS (the webhook picks its own).
read -r sim_port exp_port prom_port am_port < <(free_ports 4)
sim="http://127.0.0.1:$sim_port"
exporter="http://127.0.0.1:$exp_port"
prom="http://127.0.0.1:$prom_port"
am="http://127.0.0.1:$am_port"

# The shipped rules with every hold time cut to 3s, except MonogotoExporterDown:
# Prometheus only scrapes a few seconds after it starts (its target discovery
# updates every 5s), and absent(up{job="monogoto"}) is true until then.
helper fast-rules "$rules" "$tmp/rules.yml" 3s MonogotoExporterDown=20s >/dev/null
promtool check rules "$tmp/rules.yml" >/dev/null || fail "the test copy of the rules does not load"

# The API enforces a budget (429 over it), and the exporter follows a fleet
# that needs longer than its interval under that budget: 10 requests a refresh
# (batches of 2) at 4/s sustained is 2.5 s against a 2 s interval. No exporter
# alert may fire for that, and the API must never have to refuse a request.
budget="5/s,40/10s"
start simulator "$bin" simulate --listen "127.0.0.1:$sim_port" --things 20 --seed 1 --flap-period 1h \
    --rate-limit "$budget"
wait_until "simulator at $sim" http_ok "$sim/_sim/stats"
# The simulated fleet connects and disconnects with the wall clock: in some
# hours fewer than half of its ACTIVE Things are connected, which would fire
# MonogotoFleetConnectedRatioLow by itself. Every Thing starts connected, so
# that only what this test does changes the fleet.
python3 - "$sim" <<'PY' || fail "cannot connect the simulated fleet"
import json, sys, urllib.request
sim = sys.argv[1]
request = urllib.request.Request(f"{sim}/things?limit=50&offset=0",
                                 headers={"Authorization": "Bearer sim-static-token"})
things = json.load(urllib.request.urlopen(request, timeout=5))
for thing in things:
    iccid = thing["ExternalUniqueId"]
    body = json.dumps({"connected": True}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"{sim}/_sim/things/{iccid}/connected", data=body, method="POST",
        headers={"content-type": "application/json"}), timeout=5).read()
print(f"connected {len(things)} simulated Things", file=sys.stderr)
PY

start exporter env MONOGOTO_TOKEN=sim-static-token "$bin" \
    --monogoto.url "$sim" --monogoto.discover --poll.interval 2s --poll.batch-size 2 \
    --monogoto.rate-limit "$budget" --web.listen-address "127.0.0.1:$exp_port" \
    --storage.path "$tmp/exporter-storage"
wait_until "exporter ready at $exporter" http_ok "$exporter/readyz"

start webhook python3 "$repo/scripts/e2e/webhook_receiver.py" \
    --port-file "$tmp/webhook.port" --out "$tmp/notifications.jsonl"
wait_until "webhook receiver listening" test -s "$tmp/webhook.port"
webhook_port=$(cat "$tmp/webhook.port")

cat >"$tmp/alertmanager.yml" <<EOF
route:
  receiver: webhook
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: http://127.0.0.1:$webhook_port/
        send_resolved: true
EOF
start alertmanager "$alertmanager" --config.file="$tmp/alertmanager.yml" \
    --storage.path="$tmp/alertmanager-data" --web.listen-address="127.0.0.1:$am_port" \
    --cluster.listen-address=
wait_until "Alertmanager ready at $am" http_ok "$am/-/ready"

cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $tmp/rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$am_port"]
scrape_configs:
  - job_name: monogoto
    static_configs:
      - targets: ["127.0.0.1:$exp_port"]
EOF
promtool check config "$tmp/prometheus.yml" >/dev/null || fail "the test Prometheus config is invalid"
start prometheus "$prometheus" --config.file="$tmp/prometheus.yml" \
    --storage.tsdb.path="$tmp/prometheus-data" --web.listen-address="127.0.0.1:$prom_port" \
    --rules.alert.resend-delay=1s
wait_until "Prometheus ready at $prom" http_ok "$prom/-/ready"
wait_until "Prometheus scraping the exporter" \
    helper query "$prom" 'count(monogoto_thing_connected) == 20 and on () up{job="monogoto"} == 1'

# --- 3. disconnect a Thing, expect the alert; reconnect, expect the resolution ------
read -r iccid test_iccid < <(helper pick "$exporter/metrics" "$tmp/target.json") ||
    fail "could not pick a Thing from $exporter/metrics"
log "chosen: ACTIVE $iccid, TEST_ACTIVE $test_iccid"
wait_until "Prometheus has seen $iccid connected" \
    helper query "$prom" "monogoto_thing_connected{iccid=\"$iccid\"} == 1"

set_connected() { # ICCID true|false|null
    curl -fsS --max-time 5 -o /dev/null -X POST "$sim/_sim/things/$1/connected" \
        -H 'content-type: application/json' -d "{\"connected\": $2}" ||
        fail "simulator refused to set $1 connected=$2"
}

# expect_alert firing|resolved: waits for that MonogotoThingDisconnected
# notification of $iccid at the webhook, and checks its labels and annotations.
expect_alert() {
    wait_until "$1 MonogotoThingDisconnected{iccid=$iccid} at the webhook" \
        helper notified "$tmp/notifications.jsonl" --alertname MonogotoThingDisconnected \
        --status "$1" --label "iccid=$iccid"
    helper check-alert "$tmp/notifications.jsonl" --alertname MonogotoThingDisconnected \
        --status "$1" --target "$tmp/target.json" --instance "127.0.0.1:$exp_port" \
        --runbook docs/runbook.md >&2 || fail "the $1 alert is not as expected"
}

set_connected "$iccid" false
[ "$test_iccid" = - ] || set_connected "$test_iccid" false
log "disconnected $iccid$([ "$test_iccid" = - ] || echo " and $test_iccid")"

expect_alert firing

if [ "$test_iccid" != - ]; then
    # It is disconnected and counts as "was connected" exactly like the ACTIVE
    # one, so only the provision status keeps it silent.
    helper query "$prom" "monogoto_thing_connected{iccid=\"$test_iccid\"} == 0 and on (iccid)
        (max_over_time(monogoto_thing_connected{iccid=\"$test_iccid\"}[1h]) == 1
         or monogoto_thing_last_connection_timestamp_seconds{iccid=\"$test_iccid\"} > 0)" \
        >/dev/null || fail "the TEST_ACTIVE Thing $test_iccid is not a disconnected, once connected Thing"
    if helper query "$prom" "ALERTS{alertname=\"MonogotoThingDisconnected\", iccid=\"$test_iccid\"}" >/dev/null; then
        fail "MonogotoThingDisconnected is pending or firing for the TEST_ACTIVE Thing $test_iccid"
    fi
    helper never-notified "$tmp/notifications.jsonl" --alertnames 'MonogotoThing.*' \
        --label "iccid=$test_iccid" || fail "the TEST_ACTIVE Thing $test_iccid alerted"
    log "ok: the TEST_ACTIVE Thing $test_iccid did not alert"
else
    log "notice: no TEST_ACTIVE Thing that was connected; skipped its check"
fi

set_connected "$iccid" true
[ "$test_iccid" = - ] || set_connected "$test_iccid" null
log "reconnected $iccid"
expect_alert resolved

# --- 4. every rule against the live data; dashboards ----------------------------
helper rules-healthy "$prom" "$rules" >&2 || fail "rules are unhealthy against live data"
helper never-notified "$tmp/notifications.jsonl" \
    --alertnames 'MonogotoExporterDown|MonogotoApiFailing|MonogotoDataStale|MonogotoFleetConnectedRatioLow|MonogotoShardsMissing|MonogotoConfigReloadFailed|MonogotoStorageWriteFailing' ||
    fail "an exporter or fleet alert fired although everything was healthy"
log "ok: no exporter or fleet alert fired"
helper query "$prom" 'monogoto_refresh_target_seconds > 2 and on () monogoto_up == 1' ||
    fail "the exporter is not paced by the budget, or not healthy while it is"
refusals=$(curl -fsS --max-time 5 "$sim/_sim/polls" | python3 -c 'import json, sys; print(json.load(sys.stdin)["budget_refusals"])')
[ "$refusals" = 0 ] || fail "the API refused $refusals requests over its budget"
log "ok: paced by the budget ($budget), healthy, and no 429 from the API"

if [ -f scripts/e2e/check_dashboards.py ]; then
    log "checking every dashboard query against $prom"
    python3 scripts/e2e/check_dashboards.py --prometheus "$prom" dashboards >&2 ||
        fail "scripts/e2e/check_dashboards.py: some dashboard query failed"
    log "ok: dashboards"
else
    log "notice: scripts/e2e/check_dashboards.py not found; dashboard queries not checked"
fi
