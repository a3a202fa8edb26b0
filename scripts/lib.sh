# shellcheck shell=bash
# Shared by scripts/e2e.sh and scripts/browser-test.sh: logging, failing with
# the logs, starting background processes and stopping them on exit, waiting,
# free ports and the debug build. Sourced, not run:
#
#   # shellcheck source=scripts/lib.sh
#   source "$repo/scripts/lib.sh"
#   harness NAME WAIT_SECS KEEP [WHAT FILE]
#
# NAME prefixes every message; WAIT_SECS bounds each wait_until; a non-empty
# KEEP keeps the temporary directory $tmp, and the message that says so points
# at WHAT, the file FILE in it. harness installs the EXIT/INT/TERM traps.

# Messages go to fd 3, a copy of stderr: a trap may run while a command's
# output is redirected to /dev/null (see wait_until), and must still be heard.
exec 3>&2

harness() {
    lib_name=$1
    wait_secs=$2
    lib_keep=$3
    lib_keep_what=${4:-}
    lib_keep_file=${5:-}
    started_at=$SECONDS
    tmp=""
    pids=()
    names=()
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

log() { printf '%s: %s\n' "$lib_name" "$*" >&3; }

# The end of every log file (and webhook notification) in $tmp.
dump_logs() {
    [ -n "$tmp" ] || return 0
    local f
    for f in "$tmp"/*.log "$tmp"/*.jsonl; do
        [ -s "$f" ] || continue
        printf '\n----- %s (last 40 lines) -----\n' "${f#"$tmp"/}" >&3
        tail -n 40 "$f" >&3
    done
    printf -- '-----\n' >&3
}

fail() {
    log "FAIL: $*"
    dump_logs
    exit 1
}

cleanup() {
    local rc=$? i pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for i in "${!pids[@]}"; do
        pid=${pids[$i]}
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "${names[$i]} (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$tmp" ]; then
        if [ -n "$lib_keep" ]; then
            log "kept $tmp${lib_keep_file:+ ($lib_keep_what: $tmp/$lib_keep_file)}"
        else
            rm -rf "$tmp"
        fi
    fi
    if [ "$rc" -eq 0 ]; then
        log "PASS in $((SECONDS - started_at))s"
    else
        log "FAILED (exit $rc) after $((SECONDS - started_at))s"
    fi
    exit "$rc"
}

need() {
    command -v "$1" >/dev/null 2>&1 || fail "$1 not found; $2"
}

# start NAME COMMAND...: runs COMMAND in the background, output in $tmp/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$tmp/$name.log" 2>&1 3>&- &
    pids+=("$!")
    names+=("$name")
}

# Fails at once, with the logs, when a process started by `start` has exited.
check_alive() {
    local i
    for i in "${!pids[@]}"; do
        kill -0 "${pids[$i]}" 2>/dev/null || fail "${names[$i]} exited early"
    done
}

# wait_until DESCRIPTION COMMAND...: polls COMMAND until it succeeds, at most
# $wait_secs seconds.
wait_until() {
    local what=$1 deadline=$((SECONDS + wait_secs))
    shift
    until "$@" >/dev/null 2>&1; do
        check_alive
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${wait_secs}s waiting for: $what"
        sleep 0.25
    done
    log "ok: $what ($((SECONDS - started_at))s)"
}

http_ok() { curl -fsS --max-time 2 -o /dev/null "$1"; }

# free_ports N: N distinct free loopback ports, chosen by the OS, on one line.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
}

# Builds the exporter (debug) in the current directory, the repository, and
# sets $bin to it.
build_exporter() {
    log "cargo build --locked"
    cargo build --locked
    # shellcheck disable=SC2034 # used by the scripts that source this
    bin="$PWD/target/debug/monogoto-exporter"
    [ -x "$bin" ] || fail "$bin missing after cargo build"
}
