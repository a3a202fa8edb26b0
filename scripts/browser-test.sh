#!/usr/bin/env bash
# Browser test of the status page at `/`, on 127.0.0.1 only:
#
# 1. builds the exporter (`cargo build --locked`, debug) and starts
#    `monogoto-exporter demo --things N` on a free loopback port;
# 2. waits for /readyz, checks the page's headers with curl;
# 3. loads `/` in headless Chromium, dumps the DOM and takes a screenshot
#    (1280x900), and checks the DOM: the title, the sections, the SIMs
#    followed and reported equal to the demo's fleet, the links to /metrics,
#    /healthz and /readyz, no script; and that the screenshot is a 1280x900 PNG.
#
# Chromium is kept off the network: every host name but 127.0.0.1 fails to
# resolve, everything not on loopback goes to a dead proxy on 127.0.0.1, and
# its background services (updates, sync, safe browsing, metrics) are off. Its
# net log then proves that every connection it opened was to 127.0.0.1 (the
# requests it still makes to Google services die at the dead proxy; its IPv6
# reachability probe is a UDP connect() that sends no packet).
#
# Needs: cargo, curl, python3 and chromium (Debian: apt-get install chromium;
# .ci/run installs it). Environment: CHROMIUM (the browser binary, default
# chromium), BROWSER_TEST_WAIT (seconds each wait may take, default 30),
# BROWSER_TEST_KEEP=1 keeps the temporary directory (screenshot, DOM, logs).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
harness browser-test "${BROWSER_TEST_WAIT:-30}" "${BROWSER_TEST_KEEP:-}" screenshot status.png

chromium=${CHROMIUM:-chromium}
things=137

need cargo "install Rust"
need curl "apt-get install curl"
need python3 "apt-get install python3"
need "$chromium" "apt-get install chromium (or set CHROMIUM to a Chromium or Chrome binary)"

build_exporter

tmp=$(mktemp -d "${TMPDIR:-/tmp}/monogoto-browser-test.XXXXXX")
port=$(free_ports 1)
base="http://127.0.0.1:$port"

start exporter "$bin" demo --things "$things" --web.listen-address "127.0.0.1:$port"
wait_until "exporter ready at $base" http_ok "$base/readyz"

# --- headers -------------------------------------------------------------------
curl -fsS --max-time 5 -D "$tmp/headers.txt" -o /dev/null "$base/" || fail "GET $base/ failed"
# header_is NAME VALUE: the response to / has header NAME with exactly VALUE.
header_is() {
    local got
    got=$(tr -d '\r' <"$tmp/headers.txt" | awk -v name="$1" '
        tolower($0) ~ "^" tolower(name) ":" { sub(/^[^:]*:[ \t]*/, ""); print; exit }')
    [ "$got" = "$2" ] || fail "header $1 of $base/ is '$got', expected '$2'"
}
header_is content-type "text/html; charset=utf-8"
header_is content-security-policy "default-src 'none'; style-src 'unsafe-inline'"
header_is x-content-type-options nosniff
log "ok: headers"

# --- headless Chromium ---------------------------------------------------------
browser() {
    timeout 60 "$chromium" \
        --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --user-data-dir="$tmp/profile" --no-first-run --no-default-browser-check \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-extensions --disable-default-apps --disable-domain-reliability \
        --disable-client-side-phishing-detection --disable-breakpad --metrics-recording-only \
        --no-pings --safebrowsing-disable-auto-update \
        --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
        --proxy-server="http://127.0.0.1:9" \
        --window-size=1280,900 "$@" "$base/"
}
browser --dump-dom --log-net-log="$tmp/netlog-dom.json" >"$tmp/dom.html" 2>"$tmp/chromium-dom.log" ||
    fail "chromium --dump-dom failed (exit $?): $(tail -n 5 "$tmp/chromium-dom.log")"
browser --screenshot="$tmp/status.png" --log-net-log="$tmp/netlog-screenshot.json" \
    >"$tmp/chromium-screenshot.log" 2>&1 ||
    fail "chromium --screenshot failed (exit $?): $(tail -n 5 "$tmp/chromium-screenshot.log")"
log "ok: page loaded in Chromium ($((SECONDS - started_at))s)"

# Every TCP connection Chromium tried, and every datagram it sent, went to 127.0.0.1.
python3 - "$tmp"/netlog-*.json <<'EOF' || fail "Chromium contacted an address other than 127.0.0.1"
import json, sys
bad = set()
for path in sys.argv[1:]:
    with open(path) as f:
        log = json.load(f)
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    for event in log["events"]:
        name = names.get(event["type"], "")
        params = event.get("params") or {}
        if name in ("TCP_CONNECT_ATTEMPT", "UDP_BYTES_SENT", "UDP_SEND_ERROR"):
            address = params.get("address", "")
        elif name == "TCP_CONNECT":
            address = params.get("remote_address", "")
        else:
            continue
        if address and not address.startswith("127.0.0.1:"):
            bad.add(f"{name} {address}")
for line in sorted(bad):
    print(line, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
log "ok: Chromium connected to 127.0.0.1 only"

# has TEXT DESCRIPTION: the DOM Chromium built contains TEXT.
has() {
    grep -qF -- "$1" "$tmp/dom.html" || fail "the page has no $2 (looked for: $1)"
}
has "<title>Monogoto Exporter status</title>" "title"
has "<h1>Monogoto Exporter</h1>" "heading"
has "<h2>SIMs</h2>" "SIMs section"
has "<h2>Refresh errors</h2>" "refresh errors section"
has "total since start" "refresh errors since start"
has "<tr><th>Followed</th><td>$things</td></tr>" "count of SIMs followed equal to the demo's $things"
has " of $things reported" "connected count out of the demo's $things SIMs"
has "<a href=\"/metrics\">" "link to /metrics"
has "<a href=\"/healthz\">" "link to /healthz"
has "<a href=\"/readyz\">" "link to /readyz"
has "http-equiv=\"refresh\"" "self-refresh"
if grep -qi "<script" "$tmp/dom.html"; then
    fail "the page contains a script element"
fi
log "ok: DOM checks"

python3 - "$tmp/status.png" <<'EOF' || fail "the screenshot is not a 1280x900 PNG"
import struct, sys
with open(sys.argv[1], "rb") as f:
    head = f.read(24)
if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
    sys.exit("not a PNG")
width, height = struct.unpack(">II", head[16:24])
if (width, height) != (1280, 900):
    sys.exit(f"{width}x{height}")
EOF
[ "$(stat -c %s "$tmp/status.png")" -gt 10000 ] || fail "the screenshot is suspiciously small (a blank page?)"
log "ok: screenshot"
