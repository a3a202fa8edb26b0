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
# 3. posts webhook events to the exporter's POST /webhook as Monogoto's Hub
#    would (an SMS CDR and Data CDRs on two networks for the ACTIVE Thing chosen
#    below, Data CDRs for two more Things, events for an unknown SIM and for
#    none, and a request with a wrong token, which must get 401), so that the
#    webhook's metrics, its dashboard panels and its hinted polls are exercised;
#    disconnects an ACTIVE connected Thing (and a TEST_ACTIVE one) through the
#    simulator's control API, waits for the firing MonogotoThingDisconnected of
#    the ACTIVE one at the webhook and checks its labels and annotations, checks
#    the TEST_ACTIVE one stays silent, reconnects, waits for the resolved one;
# 4. checks the webhook's metrics in Prometheus (the last network of the SIM,
#    its IMEI, the events by type, the ignored ones, hinted polls and the time
#    from event to answer), every rule is loaded and healthy against the real
#    data, every recording rule has data, no exporter-health alert fired, and,
#    when scripts/e2e/check_dashboards.py exists, every dashboard query returns
#    data (but the forwarding between shards, which an unsharded run has none
#    of).
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

# The token Monogoto's Hub would put in the webhook URL (?token=).
webhook_token=e2e-webhook-token
start exporter env MONOGOTO_TOKEN=sim-static-token MONOGOTO_WEBHOOK_TOKEN="$webhook_token" "$bin" \
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

# Webhook events, as Monogoto's Hub POSTs them: JSON arrays of CDRs. For the
# chosen Thing, an SMS CDR and then Data CDRs on two networks, the second one
# last (its network must replace the first); Data CDRs for two more Things
# that have every series of the One Thing dashboard, so that the dashboard
# check finds a Thing with data in all its panels; then events that name an
# unknown SIM or none, which are ignored. Each hinted poll comes out of the
# exporter's request budget, hence only a few Things.
webhook="$exporter/webhook"
imei=356938035643809
read -r -a hinted < <(helper having "$exporter/metrics" 2 \
    monogoto_thing_last_disconnection_timestamp_seconds monogoto_thing_session_start_timestamp_seconds \
    monogoto_thing_last_connection_timestamp_seconds --exclude "$iccid") || hinted=()
# data_cdr ICCID MCC MNC OPERATOR: one Data CDR as JSON.
data_cdr() {
    local digits=${1%F}
    printf '{"CdrType": "DATA", "Iccid": "%s", "IMSI": "90128%s", "IMEI": "%s", "MCC": "%s", "MNC": "%s", "MnoName": "%s", "ThingId": "ThingId_ICCID_%s"}' \
        "$1" "${digits: -10}" "$imei" "$2" "$3" "$4" "$1"
}
# post_events JSON: POSTs it to /webhook with the token; fails unless accepted.
post_events() {
    local code
    code=$(curl -sS --max-time 5 -o "$tmp/webhook-answer.txt" -w '%{http_code}' -X POST \
        "$webhook?token=$webhook_token" -H 'content-type: application/json' -d "$1") ||
        fail "cannot POST to $webhook"
    case "$code" in
        2??) ;;
        *) fail "POST $webhook answered $code ($(head -c 200 "$tmp/webhook-answer.txt")) to: $1" ;;
    esac
}
post_events "[{\"CdrType\": \"MO_SMS\", \"Iccid\": \"$iccid\", \"ThingId\": \"ThingId_ICCID_$iccid\"}]"
post_events "[$(data_cdr "$iccid" 262 01 "Telekom.de")]"
others=""
for other in "${hinted[@]}"; do
    others+=", $(data_cdr "$other" 262 02 "Vodafone.de")"
done
post_events "[$(data_cdr "$iccid" 208 01 "Orange F")$others]"
post_events "[$(data_cdr 8999000000000000009 262 01 "Telekom.de"), {\"CdrType\": \"DATA\", \"MCC\": \"262\", \"MNC\": \"01\"}]"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X POST "$webhook?token=not-$webhook_token" \
    -H 'content-type: application/json' -d "[$(data_cdr "$iccid" 262 01 "Telekom.de")]") || code=none
[ "$code" = 401 ] || fail "POST $webhook with a wrong token answered $code, not 401"
log "posted webhook events for $iccid${hinted[*]:+ and ${hinted[*]}}, an unknown SIM and none; a wrong token got 401"

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

# --- 4. the webhook's metrics; every rule against the live data; dashboards -------
# What the events of step 3 left. The network and IMEI are the last CDR's.
for q in \
    "monogoto_thing_network_info{iccid=\"$iccid\", mcc=\"208\", mnc=\"01\", operator=\"Orange F\"} == 1
        and on () count(monogoto_thing_network_info{iccid=\"$iccid\"}) == 1" \
    "monogoto_thing_device_info{iccid=\"$iccid\", imei=\"$imei\"} == 1" \
    "monogoto_thing_last_event_timestamp_seconds{iccid=\"$iccid\"} > time() - 600" \
    "sum(monogoto_webhook_events_total{type=\"data\"}) >= $((2 + ${#hinted[@]}))" \
    "sum(monogoto_webhook_events_total{type=\"sms\"}) >= 1" \
    'sum(monogoto_webhook_events_ignored_total{reason="unknown_iccid"}) >= 1' \
    'sum(monogoto_webhook_events_ignored_total{reason="no_iccid"}) >= 1' \
    'sum(monogoto_webhook_requests_total{code=~"2.."}) >= 4' \
    'sum(monogoto_webhook_requests_total{code="401"}) >= 1' \
    'sum(monogoto_webhook_hinted_polls_total) >= 1' \
    'sum(monogoto_webhook_event_to_answer_seconds_count) >= 1'; do
    what=$(tr -s ' \n' ' ' <<<"$q")
    wait_until "Prometheus has: ${what% }" helper query "$prom" "$q"
done
log "ok: webhook events reached the exporter, its metrics and its hinted polls"

helper rules-healthy "$prom" "$rules" >&2 || fail "rules are unhealthy against live data"
helper never-notified "$tmp/notifications.jsonl" \
    --alertnames 'MonogotoExporterDown|MonogotoApiFailing|MonogotoDataStale|MonogotoFleetConnectedRatioLow|MonogotoShardsMissing|MonogotoConfigReloadFailed|MonogotoStorageWriteFailing|MonogotoWebhookSilent' ||
    fail "an exporter or fleet alert fired although everything was healthy"
log "ok: no exporter or fleet alert fired"
helper query "$prom" 'monogoto_refresh_target_seconds > 2 and on () monogoto_up == 1' ||
    fail "the exporter is not paced by the budget, or not healthy while it is"
refusals=$(curl -fsS --max-time 5 "$sim/_sim/polls" | python3 -c 'import json, sys; print(json.load(sys.stdin)["budget_refusals"])')
[ "$refusals" = 0 ] || fail "the API refused $refusals requests over its budget"
log "ok: paced by the budget ($budget), healthy, and no 429 from the API"

if [ -f scripts/e2e/check_dashboards.py ]; then
    log "checking every dashboard query against $prom"
    # An unsharded exporter forwards no event to another shard.
    python3 scripts/e2e/check_dashboards.py --prometheus "$prom" \
        --allow-empty 'Forwarding between shards' dashboards >&2 ||
        fail "scripts/e2e/check_dashboards.py: some dashboard query failed"
    log "ok: dashboards"
else
    log "notice: scripts/e2e/check_dashboards.py not found; dashboard queries not checked"
fi
