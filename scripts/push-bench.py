#!/usr/bin/env python3
"""Webhook hints end to end (issue 18): the simulator and the exporter as separate processes.

    scripts/push-bench.py [--bin target/release/monogoto-exporter] [--things 10000]
                          [--budget 60/s,1000/min] [--interval 1s] [--inactive-interval 60s]
                          [--changes 100] [--baseline-changes 100] [--poll-every 0.02]
                          [--throughput-seconds 10] [--throughput-clients 4]
                          [--exporter-core 1] [--client-core 0]
                          [--e2e-things 100000] [--e2e-events 20]
                          [--only latency,throughput,e2e] [--json PATH] [--keep-logs]

Three scenarios, one after the other (never two exporters at once):

  latency     The simulator enforces --budget (429 over it) and the exporter keeps
              to it, --poll.interval INTERVAL and --poll.inactive-interval
              INACTIVE (the standard plan 60/min,1000/h run 60 times faster:
              60/s,1000/min, 1s, 60s), following the N SIMs of an
              --monogoto.iccids-file. With N large enough, a pass takes several
              seconds and one is always running. After the first pass, CHANGES
              times, one after the other: a random ACTIVE SIM not used before,
              its current monogoto_thing_connected read from /metrics, its
              connected state flipped through the simulator's control API
              (POST /_sim/things/ICCID/connected, which costs nothing of the
              budget), then one Data CDR naming it POSTed to the exporter's
              /webhook; /metrics is read every POLL_EVERY seconds until it
              shows the new value. Then BASELINE_CHANGES flips of other ACTIVE
              SIMs with no event: the SIM's turn in the pass, and the next
              publication of the pass (one each 5 s at most, and its end),
              bring the new value. These overlap: a flip every BASELINE_SPACING
              seconds on average (exponential gaps), one read of the whole
              family every BASELINE_POLL_EVERY checking each SIM still waiting.
              Flips started right after the previous one showed would start
              just after a publication, in step with the passes, and their
              times would bunch at whole publication periods
              (--baseline-spacing 0 does that, for comparison).

              Each /metrics read is streamed and cut as soon as the SIM's line
              of monogoto_thing_connected (the body's first family) went by, so
              a read costs a tenth of a body rather than the whole of it. The
              time of a change is from the POST of the event (the flip, with no
              event) to the start of the first read that showed the new value:
              an upper bound, the read before it (a lower bound) at most one
              POLL_EVERY plus one read earlier. Changes are spaced by a random
              0.2 to 0.8 s, so they land at any phase of the pacer's slots.

              A request slot is 1 / the sustained rate the exporter keeps: its
              limiter keeps each window 5 % longer (at least 100 ms, at most
              2 s), so 1000/min sustains 1000 requests in 62 s, a slot of 62 ms.
              The script cross-checks it with the exporter's own plan:
              monogoto_refresh_target_seconds / the requests_per_refresh of its
              "polling plan" line.

              429s: the simulator's budget_refusals and the exporter's
              monogoto_api_requests_total{code="429"}, over the warm-up (first
              pass) and over the measured changes. The exporter's
              monogoto_webhook_event_to_answer_seconds and
              monogoto_webhook_hinted_polls_total are read before and after the
              event run.

  throughput  A fresh exporter of the same kind (budgeted, N SIMs), pinned to
              one core (taskset -c EXPORTER_CORE), receives bodies of 1,000
              Data CDRs naming followed SIMs (N/1000 different bodies, each SIM
              once per round) from wrk pinned to the other core (-t2, CLIENTS
              connections, keep-alive, a Lua script cycling through the bodies;
              without wrk, Python threads with http.client). Two event shapes:
              "short" (CdrType, Iccid, MCC, MNC, MnoName, IMEI: about 130 bytes)
              and "full" (every field the simulator's CDRs carry: about 500
              bytes). Gives events/s, and the exporter's CPU seconds
              (utime+stime from /proc/PID/stat, and the threads' schedstat) per
              1,000 events; all hints land on a queue that the budget drains at
              a few hundred SIMs a second, so this is a storm.

  e2e         An exporter without a budget following E2E_THINGS SIMs,
              --poll.interval 3600s: after its first refresh it is idle. E2E_EVENTS
              times: one event for a random SIM; the exporter's CPU (threads'
              schedstat, ns) from before the POST to 0.5 s after the simulator
              saw the hinted status request, minus the idle rate measured
              before. Nothing scrapes /metrics meanwhile (a scrape at 100k is
              62 MB); the histogram is checked once at the end. It is the whole
              path: receipt, a status request of one SIM, its answer published.

Never talks to anything but 127.0.0.1. Python 3 standard library only; wrk
(apt-get install wrk) and taskset for the throughput scenario.
"""

import argparse
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join("target", "release", "monogoto-exporter")
TOKEN = "sim-static-token"
WEBHOOK_TOKEN = "push-bench-webhook-token"
BATCH = 50
THINGS_PAGE = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")
EVENTS_PER_BODY = 1000
CONNECTED = b"monogoto_thing_connected"


class BenchError(Exception):
    """A failure worth one clear line, and a non-zero exit."""


def warn(message):
    print("warning: " + message, file=sys.stderr, flush=True)


def log(message):
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes


class Proc:
    """A child process with its log file; stopped by pid."""

    def __init__(self, name, argv, logdir, env=None):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        self.log = open(self.log_path, "wb")
        self.argv = argv
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                      stderr=subprocess.STDOUT, env=env)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def check_alive(self):
        if not self.alive():
            raise BenchError(f"{self.name} (pid {self.pid}) exited with code "
                             f"{self.popen.returncode}:\n" + self.log_tail())

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "  (no log)"
        tail = text.splitlines()[-lines:]
        return "\n".join("  | " + line for line in tail) or "  (empty log)"

    def cpu_seconds(self):
        """utime + stime of every thread of the process, in seconds."""
        with open(f"/proc/{self.pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def sched_seconds(self):
        """(seconds on CPU, thread ids) of the live threads, from /proc/PID/task/*/schedstat.

        Nanosecond resolution, but a thread that exits takes its time with it:
        a difference of two samples holds only when both saw the same threads."""
        total, tids = 0, set()
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                tids.add(tid)
            except (OSError, ValueError, IndexError):
                pass
        return total / 1e9, frozenset(tids)

    def cpus_allowed(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
        return None

    def stop(self):
        if self.alive():
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.log.close()


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    total = sum(values)
    return (total - values[3] - values[4]) / CLK_TCK, total / CLK_TCK


def own_cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# HTTP


def http_get(url, headers=None, timeout=60.0):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait_until(what, check, timeout, procs=(), interval=0.1):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        for p in procs:
            p.check_alive()
        try:
            value = check()
            if value:
                return value
        except OSError as e:
            last_error = e
        time.sleep(interval)
    hint = f" (last error: {last_error})" if last_error else ""
    logs = "".join(f"\n{p.name} log:\n{p.log_tail()}" for p in procs)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{hint}{logs}")


def sim_stats(sim_url):
    status, _, body = http_get(sim_url + "/_sim/stats", timeout=10)
    if status != 200:
        raise BenchError(f"simulator /_sim/stats answered {status}")
    stats = json.loads(body)
    return {k: int(stats.get(k, 0)) for k in ("auth", "things", "status")}


def sim_refusals(sim_url):
    _, _, body = http_get(sim_url + "/_sim/polls", timeout=30)
    return int(json.loads(body).get("budget_refusals", 0))


class KeepAlive:
    """One keep-alive connection to a 127.0.0.1 server, reopened when it drops."""

    def __init__(self, url, timeout=30):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# Exporter metrics: every line that is not a per-Thing one.
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def exporter_metrics(url, timeout=120):
    """{(name, labels): value} of the exporter's own series (gzip is not asked for)."""
    status, _, body = http_get(url + "/metrics", timeout=timeout)
    if status != 200:
        raise BenchError(f"exporter /metrics answered {status}")
    out = {}
    for line in body.split(b"\n"):
        if not line.startswith(b"monogoto_") or line.startswith(b"monogoto_thing_"):
            continue
        m = SAMPLE.match(line.decode("utf-8", "replace"))
        if m:
            try:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def metric(metrics, name, **labels):
    """The sum of the series of `name` whose labels include `labels`."""
    total = 0.0
    for (n, lab), value in metrics.items():
        if n == name and all(f'{k}="{v}"' in lab for k, v in labels.items()):
            total += value
    return total


def histogram(metrics, name):
    """(count, sum, [(le, cumulative count)]) of a histogram without labels."""
    buckets = []
    for (n, lab), value in metrics.items():
        if n == name + "_bucket":
            le = re.search(r'le="([^"]+)"', lab).group(1)
            buckets.append((math.inf if le == "+Inf" else float(le), value))
    buckets.sort()
    return metric(metrics, name + "_count"), metric(metrics, name + "_sum"), buckets


def histogram_delta(before, after):
    c0, s0, b0 = before
    c1, s1, b1 = after
    d0 = dict(b0)
    return c1 - c0, s1 - s0, [(le, v - d0.get(le, 0.0)) for le, v in b1]


class Probe:
    """Reads one SIM's monogoto_thing_connected from /metrics, streaming.

    The per-Thing families come first in the body, monogoto_thing_connected
    first of them: the read stops at the SIM's line, or at the next family's
    header when the SIM has no line, and the connection is closed there."""

    CHUNK = 64 * 1024

    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.bytes_read = 0
        self.reads = 0

    def read_many(self, iccids):
        """{ICCID: value or None} for each of `iccids`, from one read of the
        whole monogoto_thing_connected family."""
        end_of_family = b"\n# HELP monogoto_thing_active_sessions "
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            if response.status != 200:
                raise BenchError(f"exporter /metrics answered {response.status}")
            parts, scanned = [], b""
            while True:
                chunk = response.read1(self.CHUNK)
                if not chunk:
                    break
                self.bytes_read += len(chunk)
                parts.append(chunk)
                scanned = scanned[-len(end_of_family):] + chunk
                if scanned.find(end_of_family) >= 0:
                    break
        finally:
            self.reads += 1
            conn.close()
        family = b"".join(parts)
        out = {}
        for iccid in iccids:
            needle = CONNECTED + b'{iccid="' + iccid.encode() + b'"} '
            at = family.find(needle)
            if at < 0:
                out[iccid] = None
                continue
            line_end = family.find(b"\n", at)
            out[iccid] = float(family[at + len(needle):line_end].split()[0])
        return out

    def read(self, iccid):
        """The SIM's value (0.0 or 1.0), or None when it has no line."""
        needle = CONNECTED + b'{iccid="' + iccid.encode() + b'"} '
        end_of_family = b"\n# HELP monogoto_thing_active_sessions "
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            if response.status != 200:
                raise BenchError(f"exporter /metrics answered {response.status}")
            buf = b""
            while True:
                chunk = response.read1(self.CHUNK) if hasattr(response, "read1") \
                    else response.read(self.CHUNK)
                if not chunk:
                    return None
                self.bytes_read += len(chunk)
                buf += chunk
                at = buf.find(needle)
                if at >= 0:
                    line_end = buf.find(b"\n", at)
                    while line_end < 0:
                        more = response.read(256)
                        if not more:
                            break
                        buf += more
                        line_end = buf.find(b"\n", at)
                    value = buf[at + len(needle):line_end if line_end >= 0 else None]
                    return float(value.split()[0])
                if buf.find(end_of_family) >= 0:
                    return None
                # Keep enough for a needle cut between two chunks.
                buf = buf[-(len(needle) + len(end_of_family)):]
        finally:
            self.reads += 1
            conn.close()


# --------------------------------------------------------------------------
# Budget arithmetic


def parse_seconds(text):
    """A duration such as 60s, 1m, 1h or 500ms, in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)", text.strip())
    if not m:
        raise BenchError(f"{text!r}: expected a duration such as 60s, 1m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def windows(budget):
    out = []
    for window in budget.split(","):
        count, _, period = window.strip().partition("/")
        period = period.strip()
        out.append((int(count), parse_seconds(period if period[:1].isdigit() else "1" + period)))
    return out


def guarded_rate(budget):
    """Requests per second the exporter's limiter sustains: each window kept 5 %
    longer, at least 100 ms and at most 2 s (src/monogoto/budget.rs)."""
    return min(n / (p + min(2.0, max(0.1, p / 20))) for n, p in windows(budget))


def nominal_rate(budget):
    return min(n / p for n, p in windows(budget))


PLAN_LINE = re.compile(r"^(\S+)\s+INFO\s+monogoto_exporter::poller: polling plan\b.*")
PLAN_FIELD = re.compile(r'\b(active|inactive|requests_per_refresh|budget|refresh_target|'
                        r'refresh_target_seconds|interval)=("[^"]*"|\S+)')
REFRESH_LINE = re.compile(r"DEBUG\s+monogoto_exporter::poller: refresh finished .*?"
                          r"\bthings=(\d+)\b.*?\bseconds=([0-9.e-]+)")


def plan_lines(log_path):
    out = []
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if PLAN_LINE.match(line):
                out.append({k: v.strip('"') for k, v in PLAN_FIELD.findall(line)})
    return out


def refresh_walls(log_path):
    """(things, seconds) of every "refresh finished" line."""
    with open(log_path, encoding="utf-8", errors="replace") as f:
        return [(int(m.group(1)), float(m.group(2)))
                for m in map(REFRESH_LINE.search, f) if m]


# --------------------------------------------------------------------------
# Events


def short_event(iccid):
    return {"CdrType": "DATA", "Iccid": iccid, "MCC": "425", "MNC": "01",
            "MnoName": "Partner", "IMEI": "356938035643809"}


def full_event(iccid, i):
    """A Data CDR with every field the simulator's carry (src/simulator/webhook.rs)."""
    up, down = 1000 + 37 * i % 90000, 5000 + 101 * i % 900000
    return {
        "CdrType": "DATA", "UniqueID": f"cdr-{i:012d}", "Iccid": iccid,
        "IMSI": f"42501{i:010d}", "MSISDN": f"+44{i:010d}", "IMEI": "356938035643809",
        "MNO": "42501", "MnoName": "Partner", "MCC": "425", "MNC": "01",
        "ThingName": f"thing-{i:06d}", "ThingId": f"ThingId_ICCID_{iccid}",
        "SessionId": f"{i:016x}", "ApnName": "data.mono",
        "StartTime": "2026-12-05T10:00:00Z", "EndTime": "2026-12-05T10:12:34Z",
        "UplinkBytes": up, "DownlinkBytes": down, "TotalBytes": up + down,
    }


def bodies_for(iccids, shape):
    """Bodies of EVENTS_PER_BODY events: each SIM once per round of bodies."""
    out = []
    for start in range(0, len(iccids) - EVENTS_PER_BODY + 1, EVENTS_PER_BODY):
        chunk = iccids[start:start + EVENTS_PER_BODY]
        events = [short_event(c) if shape == "short" else full_event(c, start + k)
                  for k, c in enumerate(chunk)]
        out.append(json.dumps(events, separators=(",", ":")).encode())
    if not out:
        raise BenchError(f"need at least {EVENTS_PER_BODY} SIMs for a body")
    return out


WRK_LUA = """\
-- Cycles through the bodies named after --, one POST each.
local bodies = {}
local n = 0
function init(args)
  for i, path in ipairs(args) do
    local f = assert(io.open(path, "rb"))
    bodies[i] = f:read("*a")
    f:close()
  end
  n = math.random(#bodies)
end
function request()
  n = n % #bodies + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer %s",
  }, bodies[n])
end
"""

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
LATENCY_LINE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m|h)\s*$")


def parse_wrk(text):
    out = {"timeouts": 0, "socket_errors": 0, "non_2xx": 0}
    in_dist = False
    for line in text.splitlines():
        if "Latency Distribution" in line:
            in_dist = True
            continue
        m = LATENCY_LINE.match(line)
        if in_dist and m:
            out["p" + m.group(1) + "_ms"] = float(m.group(2)) * UNITS[m.group(3)]
            continue
        m = re.match(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", line)
        if m:
            out["requests"] = int(m.group(1))
            out["elapsed_s"] = float(m.group(2)) * UNITS[m.group(3)] / 1000
        m = re.match(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", line)
        if m:
            out["socket_errors"] = sum(int(g) for g in m.groups()[:3])
            out["timeouts"] = int(m.group(4))
        m = re.match(r"^\s*Non-2xx or 3xx responses: (\d+)", line)
        if m:
            out["non_2xx"] = int(m.group(1))
        m = re.match(r"^\s*Requests/sec:\s+([0-9.]+)", line)
        if m:
            out["requests_per_s"] = float(m.group(1))
    if "requests" not in out:
        raise BenchError("could not read wrk's output:\n" + text)
    return out


def python_clients(url, bodies, clients, seconds):
    """Fallback without wrk: threads posting the bodies on keep-alive connections."""
    counts, bad = [0] * clients, [0] * clients
    stop = time.monotonic() + seconds

    def client(k):
        conn = KeepAlive(url)
        n = k
        while time.monotonic() < stop:
            status, _ = conn.request("POST", "/webhook", bodies[n % len(bodies)], {
                "Content-Type": "application/json",
                "Authorization": "Bearer " + WEBHOOK_TOKEN})
            n += 1
            counts[k] += 1
            bad[k] += status != 202
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"requests": sum(counts), "elapsed_s": elapsed, "requests_per_s": sum(counts) / elapsed,
            "non_2xx": sum(bad), "socket_errors": 0, "timeouts": 0,
            "command": f"python threads x{clients}"}


# --------------------------------------------------------------------------


def list_fleet(sim_url, n):
    """(ICCID, State) of every Thing of the simulated account, from /things."""
    out, offset = [], 0
    while True:
        status, _, body = http_get(f"{sim_url}/things?limit={THINGS_PAGE}&offset={offset}",
                                   {"Authorization": "Bearer " + TOKEN}, timeout=30)
        if status != 200:
            raise BenchError(f"simulator /things answered {status}")
        page = json.loads(body)
        if isinstance(page, dict):
            page = page.get("Data") or page.get("data") or []
        for thing in page:
            thing_id = thing.get("ThingId", "")
            iccid = thing_id.removeprefix("ThingId_ICCID_") if thing_id else ""
            out.append((iccid or thing["ExternalUniqueId"], thing.get("State")))
        if len(page) < THINGS_PAGE:
            break
        offset += len(page)
    if len({i for i, _ in out}) != n:
        raise BenchError(f"the simulator listed {len(out)} Things, expected {n}")
    return out


def median(values):
    return statistics.median(values) if values else None


def quantile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Bench:
    def __init__(self, args, logdir):
        self.args = args
        self.logdir = logdir
        self.procs = []
        self.fleets = {}

    def start(self, name, argv, env=None):
        proc = Proc(name, argv, self.logdir, env)
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as e:  # keep stopping the others
                warn(f"stopping {proc.name} (pid {proc.pid}): {e}")
        self.procs.clear()

    def start_sim(self, name, n, budget=None):
        port = free_port()
        argv = [self.args.bin, "simulate", "--listen", f"127.0.0.1:{port}", "--things", str(n),
                "--seed", "1", "--log.level", "warn"]
        if budget:
            argv += ["--rate-limit", budget]
        sim = self.start(name, argv)
        url = f"http://127.0.0.1:{port}"
        wait_until(f"{name} /_sim/stats", lambda: sim_stats(url) is not None, 120, [sim])
        return sim, url

    def fleet(self, n):
        """(ICCID, State) of the fleet of n, listed from an unlimited twin, and
        the file of its ICCIDs."""
        if n not in self.fleets:
            twin, url = self.start_sim(f"twin-{n}", n)
            fleet = list_fleet(url, n)
            self.stop(twin)
            path = os.path.join(self.logdir, f"iccids-{n}.txt")
            with open(path, "w") as f:
                f.write("\n".join(i for i, _ in fleet) + "\n")
            self.fleets[n] = (fleet, path)
        return self.fleets[n]

    def start_exporter(self, name, sim_url, iccids_file, interval, budget, extra=(), prefix=()):
        port = free_port()
        env = dict(os.environ, MONOGOTO_TOKEN=TOKEN, MONOGOTO_WEBHOOK_TOKEN=WEBHOOK_TOKEN)
        env.pop("RUST_LOG", None)
        argv = list(prefix) + [
            self.args.bin,
            "--monogoto.url", sim_url,
            "--monogoto.rate-limit", budget,
            "--monogoto.iccids-file", iccids_file,
            "--poll.interval", interval,
            "--web.listen-address", f"127.0.0.1:{port}",
            "--log.level", "warn,monogoto_exporter::poller=debug",
        ] + list(extra)
        return self.start(name, argv, env), f"http://127.0.0.1:{port}"

    def wait_first_refresh(self, name, exp, url, sim, n, timeout):
        wait_until(f"{name}: the first refresh",
                   lambda: metric(exporter_metrics(url), "monogoto_things_reported") == n,
                   timeout, [sim, exp], interval=1)

    # ---------------------------------------------------------------- latency

    def run_latency(self):
        a = self.args
        n = a.things
        fleet, iccids_file = self.fleet(n)
        rate = guarded_rate(a.budget)
        r = {"things": n, "budget": a.budget, "interval": a.interval,
             "inactive_interval": a.inactive_interval,
             "nominal_rps": nominal_rate(a.budget), "sustained_rps": rate,
             "slot_formula_s": 1 / rate, "poll_every_s": a.poll_every}
        sim, sim_url = self.start_sim(f"sim-latency-{n}", n, a.budget)
        exp, url = self.start_exporter(f"latency-{n}", sim_url, iccids_file, a.interval, a.budget,
                                       ["--poll.inactive-interval", a.inactive_interval])
        procs = [sim, exp]
        started = time.monotonic()
        self.wait_first_refresh("latency", exp, url, sim, n, 120 + 3 * n / (BATCH * rate))
        r["first_refresh_s"] = round(time.monotonic() - started, 1)
        # The plan after the first pass sorted the SIMs into tiers.
        # (logged again only when it changed: a fleet of one tier keeps the first line)
        try:
            wait_until("the plan after the first refresh",
                       lambda: len(plan_lines(exp.log_path)) >= 2, 20, procs, interval=0.5)
        except BenchError:
            warn("[latency] one 'polling plan' line only: the tiers did not change it")
        plans = plan_lines(exp.log_path)
        if not plans:
            raise BenchError(f"no 'polling plan' line in {exp.log_path}: the log format changed?")
        plan = plans[-1]
        m0 = exporter_metrics(url)
        target = metric(m0, "monogoto_refresh_target_seconds")
        per_refresh = float(plan.get("requests_per_refresh", "nan"))
        r["plan"] = plan
        r["target_s"] = target
        r["slot_plan_s"] = target / per_refresh if per_refresh else None
        r["warm_up_429_sim"] = sim_refusals(sim_url)
        r["warm_up_429_exporter"] = metric(m0, "monogoto_api_requests_total", code="429")
        slot = r["slot_formula_s"]
        log(f"[latency] N={n}: target {target:.2f} s, {per_refresh} requests a refresh, slot "
            f"{slot * 1000:.1f} ms (plan: {r['slot_plan_s'] * 1000:.1f} ms); "
            f"warm-up 429s: {r['warm_up_429_sim']}")

        rng = random.Random(a.seed)
        candidates = [i for i, state in fleet if state == "ACTIVE"]
        rng.shuffle(candidates)
        probe = Probe(url)
        control = KeepAlive(sim_url)
        webhook = KeepAlive(url)

        def change(iccid, with_event, poll_every, timeout):
            before = probe.read(iccid)
            if before is None:
                return None
            want = 0.0 if before else 1.0
            status, text = control.request(
                "POST", f"/_sim/things/{iccid}/connected",
                json.dumps({"connected": bool(want)}).encode(),
                {"Content-Type": "application/json"})
            if status != 204:
                raise BenchError(f"simulator connected control answered {status}: {text[:200]!r}")
            t_flip = time.monotonic()
            t_event = None
            if with_event:
                body = json.dumps(short_event(iccid)).encode()
                t_event = time.monotonic()
                status, text = webhook.request("POST", f"/webhook?token={WEBHOOK_TOKEN}", body,
                                               {"Content-Type": "application/json"})
                if status != 202:
                    raise BenchError(f"POST /webhook answered {status}: {text[:200]!r}")
            t0 = t_event if with_event else t_flip
            last_start, reads = None, 0
            deadline = t0 + timeout
            next_read = time.monotonic()
            while True:
                now = time.monotonic()
                if now < next_read:
                    time.sleep(next_read - now)
                start = time.monotonic()
                next_read = start + poll_every
                value = probe.read(iccid)
                reads += 1
                if value == want:
                    return {"iccid": iccid, "to": want, "upper_s": start - t0,
                            "lower_s": (last_start - t0) if last_start is not None else 0.0,
                            "flip_to_event_s": (t_event - t_flip) if t_event else None,
                            "reads": reads}
                last_start = start
                if start > deadline:
                    for p in procs:
                        p.check_alive()
                    return {"iccid": iccid, "to": want, "timed_out": True,
                            "upper_s": None, "reads": reads}

        def run(k, with_event, poll_every, timeout, label):
            results = []
            while len(results) < k:
                if not candidates:
                    raise BenchError("no ACTIVE SIM left to flip")
                one = change(candidates.pop(), with_event, poll_every, timeout)
                if one is None:
                    continue
                results.append(one)
                if one.get("timed_out"):
                    warn(f"[latency] {label}: {one['iccid']} did not change within {timeout:.0f}s")
                elif len(results) % 10 == 0:
                    done = [x["upper_s"] for x in results if x.get("upper_s") is not None]
                    log(f"[latency] {label}: {len(results)}/{k}, median so far "
                        f"{median(done):.3f} s, worst {max(done):.3f} s")
                time.sleep(rng.uniform(0.2, 0.8))
            return results

        def flip(iccid):
            """Flips the SIM against what /metrics shows: (new value, time), or None."""
            before = probe.read(iccid)
            if before is None:
                return None
            want = 0.0 if before else 1.0
            status, text = control.request(
                "POST", f"/_sim/things/{iccid}/connected",
                json.dumps({"connected": bool(want)}).encode(),
                {"Content-Type": "application/json"})
            if status != 204:
                raise BenchError(f"simulator connected control answered {status}: {text[:200]!r}")
            return want, time.monotonic()

        def run_overlapping(k, spacing, poll_every, timeout, label):
            """Flips with no event, at exponentially spaced times (mean `spacing`)
            that know nothing of the exporter's passes and publications; one read
            of the family every poll_every checks every SIM still waiting."""
            results, pending = [], {}
            flips, next_flip = 0, time.monotonic()
            while flips < k or pending:
                if flips < k and time.monotonic() >= next_flip:
                    if not candidates:
                        raise BenchError("no ACTIVE SIM left to flip")
                    iccid = candidates.pop()
                    flipped = flip(iccid)
                    if flipped is None:
                        continue
                    pending[iccid] = {"want": flipped[0], "t0": flipped[1], "last": None,
                                      "reads": 0}
                    flips += 1
                    next_flip += rng.expovariate(1 / spacing)
                start = time.monotonic()
                values = probe.read_many(list(pending))
                for iccid, value in values.items():
                    p = pending[iccid]
                    p["reads"] += 1
                    if value == p["want"]:
                        results.append({"iccid": iccid, "to": p["want"], "upper_s": start - p["t0"],
                                        "lower_s": (p["last"] - p["t0"]) if p["last"] else 0.0,
                                        "reads": p["reads"]})
                        del pending[iccid]
                        if len(results) % 10 == 0:
                            done = [x["upper_s"] for x in results]
                            log(f"[latency] {label}: {len(results)}/{k}, median so far "
                                f"{median(done):.3f} s, worst {max(done):.3f} s")
                    elif start - p["t0"] > timeout:
                        results.append({"iccid": iccid, "to": p["want"], "timed_out": True,
                                        "upper_s": None, "reads": p["reads"]})
                        warn(f"[latency] {label}: {iccid} did not change within {timeout:.0f}s")
                        del pending[iccid]
                    else:
                        p["last"] = start
                for proc in procs:
                    proc.check_alive()
                wake = start + poll_every
                if flips < k:
                    wake = min(wake, next_flip)
                time.sleep(max(0.0, wake - time.monotonic()))
            return results

        def summary(results, m_before, m_after, refusals_before, elapsed, cpu):
            done = [x["upper_s"] for x in results if x.get("upper_s") is not None]
            lower = [x["lower_s"] for x in results if x.get("upper_s") is not None]
            out = {
                "changes": len(results),
                "timed_out": sum(1 for x in results if x.get("timed_out")),
                "median_s": median(done), "p90_s": quantile(done, 0.9), "worst_s": max(done),
                "best_s": min(done), "median_lower_s": median(lower),
                "median_slots": median(done) / slot, "worst_slots": max(done) / slot,
                "reads_median": median([x["reads"] for x in results]),
                "429_sim": sim_refusals(sim_url) - refusals_before,
                "429_exporter": metric(m_after, "monogoto_api_requests_total", code="429")
                - metric(m_before, "monogoto_api_requests_total", code="429"),
                "status_requests_exporter": metric(m_after, "monogoto_api_requests_total",
                                                   endpoint="status")
                - metric(m_before, "monogoto_api_requests_total", endpoint="status"),
                "hinted_polls": metric(m_after, "monogoto_webhook_hinted_polls_total")
                - metric(m_before, "monogoto_webhook_hinted_polls_total"),
                "elapsed_s": round(elapsed, 1),
                "exporter_cpu_per_s": round(cpu / elapsed, 3),
                "each": results,
            }
            count, total, buckets = histogram_delta(
                histogram(m_before, "monogoto_webhook_event_to_answer_seconds"),
                histogram(m_after, "monogoto_webhook_event_to_answer_seconds"))
            out["event_to_answer"] = {"count": count, "sum_s": total,
                                      "mean_s": total / count if count else None,
                                      "buckets": [[("+Inf" if le == math.inf else le), v]
                                                  for le, v in buckets]}
            return out

        for label, k, with_event, poll_every in (
                ("with event", a.changes, True, a.poll_every),
                ("no event", a.baseline_changes, False, a.baseline_poll_every)):
            if k == 0:
                continue
            m_before, refusals_before = exporter_metrics(url), sim_refusals(sim_url)
            cpu0, t0 = exp.cpu_seconds(), time.monotonic()
            timeout = 3 * target + 30
            if with_event or a.baseline_spacing <= 0:
                results = run(k, with_event, poll_every, timeout, label)
            else:
                results = run_overlapping(k, a.baseline_spacing, poll_every, timeout, label)
            elapsed, cpu = time.monotonic() - t0, exp.cpu_seconds() - cpu0
            m_after = exporter_metrics(url)
            key = "event" if with_event else "baseline"
            r[key] = summary(results, m_before, m_after, refusals_before, elapsed, cpu)
            s = r[key]
            log(f"[latency] {label}: median {s['median_s']:.3f} s ({s['median_slots']:.2f} slots), "
                f"worst {s['worst_s']:.3f} s ({s['worst_slots']:.2f} slots), "
                f"429s {s['429_sim']} (exporter {s['429_exporter']:.0f}), "
                f"hinted polls {s['hinted_polls']:.0f}, event_to_answer {s['event_to_answer']['count']:.0f} "
                f"mean {s['event_to_answer']['mean_s']}")
        walls = refresh_walls(exp.log_path)
        r["pass_walls_s"] = [round(w, 2) for t, w in walls[1:]]
        r["probe_bytes_per_read"] = round(probe.bytes_read / max(1, probe.reads))
        control.close()
        webhook.close()
        self.stop(exp)
        self.stop(sim)
        return r

    # ------------------------------------------------------------- throughput

    def run_throughput(self):
        a = self.args
        n = a.throughput_things or a.things
        fleet, iccids_file = self.fleet(n)
        iccids = [i for i, _ in fleet]
        random.Random(a.seed).shuffle(iccids)
        rate = guarded_rate(a.budget)
        results = {"things": n, "exporter_core": a.exporter_core, "client_core": a.client_core,
                   "clients": a.throughput_clients, "seconds": a.throughput_seconds}
        use_wrk = shutil.which("wrk") is not None and not a.python_clients
        for shape in ("short", "full"):
            bodies = bodies_for(iccids, shape)
            paths = []
            for k, body in enumerate(bodies):
                path = os.path.join(self.logdir, f"body-{shape}-{k}.json")
                with open(path, "wb") as f:
                    f.write(body)
                paths.append(path)
            sim, sim_url = self.start_sim(f"sim-throughput-{shape}-{n}", n, a.budget)
            exp, url = self.start_exporter(
                f"throughput-{shape}-{n}", sim_url, iccids_file, a.interval, a.budget,
                ["--poll.inactive-interval", a.inactive_interval],
                prefix=["taskset", "-c", str(a.exporter_core)])
            self.wait_first_refresh(f"throughput {shape}", exp, url, sim, n,
                                    120 + 3 * n / (BATCH * rate))
            m0 = exporter_metrics(url)
            busy0, own0 = machine_cpu(), own_cpu()
            cpu0, sched0, t0 = exp.cpu_seconds(), exp.sched_seconds(), time.monotonic()
            if use_wrk:
                lua = os.path.join(self.logdir, "post.lua")
                with open(lua, "w") as f:
                    f.write(WRK_LUA.replace("%s", WEBHOOK_TOKEN))
                argv = ["taskset", "-c", str(a.client_core), "wrk", "-t2",
                        f"-c{a.throughput_clients}", f"-d{a.throughput_seconds}s", "--latency",
                        "--timeout", "30s", "-s", lua, url + "/webhook", "--"] + paths
                done = subprocess.run(argv, capture_output=True, text=True,
                                      timeout=a.throughput_seconds + 120, check=False)
                if done.returncode != 0:
                    raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
                w = parse_wrk(done.stdout)
                shown = [("post.lua" if x == lua else x) for x in argv[:argv.index("--")]]
                w["command"] = " ".join(shown[:-1] + ["URL/webhook", "--", "BODIES"])
            else:
                w = python_clients(url, bodies, a.throughput_clients, a.throughput_seconds)
            elapsed = time.monotonic() - t0
            cpu, sched1 = exp.cpu_seconds() - cpu0, exp.sched_seconds()
            (b0, tot0), (b1, tot1) = busy0, machine_cpu()
            foreign = max(0.0, (b1 - b0) - (own_cpu() - own0) - cpu) / max(1e-9, tot1 - tot0)
            m1 = exporter_metrics(url)
            exp.check_alive()
            events = metric(m1, "monogoto_webhook_events_total", type="data") \
                - metric(m0, "monogoto_webhook_events_total", type="data")
            accepted = metric(m1, "monogoto_webhook_requests_total", code="202") \
                - metric(m0, "monogoto_webhook_requests_total", code="202")
            # A thread that started counts whole; one that ended took its time along.
            sched = sched1[0] - sched0[0] if sched0[1] <= sched1[1] else None
            body_bytes = sum(len(b) for b in bodies) / len(bodies)
            results[shape] = {
                "bodies": len(bodies), "body_bytes": round(body_bytes),
                "event_bytes": round(body_bytes / EVENTS_PER_BODY),
                "client": w,
                "events_counted": events, "posts_202": accepted,
                "events_per_s": w["requests_per_s"] * EVENTS_PER_BODY,
                "events_per_s_counted": events / elapsed,
                "exporter_cpu_s": round(cpu, 3), "exporter_sched_s": sched,
                "exporter_core_share": round(cpu / elapsed, 3),
                "cpu_per_1000_events_ms": 1000 * cpu / (events / 1000) if events else None,
                "sched_per_1000_events_ms": 1000 * sched / (events / 1000)
                if events and sched is not None else None,
                "exporter_cpus_allowed": exp.cpus_allowed(),
                "hinted_polls_during": metric(m1, "monogoto_webhook_hinted_polls_total")
                - metric(m0, "monogoto_webhook_hinted_polls_total"),
                "429_exporter": metric(m1, "monogoto_api_requests_total", code="429"),
                "foreign_cpu_share": round(foreign, 3),
            }
            x = results[shape]
            if w["non_2xx"] or w["socket_errors"] or w["timeouts"]:
                warn(f"[throughput] {shape}: {w['non_2xx']} non-2xx, {w['socket_errors']} socket "
                     f"errors, {w['timeouts']} timeouts")
            log(f"[throughput] {shape} ({x['event_bytes']} B/event): {x['events_per_s']:,.0f} events/s "
                f"(counted {x['events_per_s_counted']:,.0f}), exporter {x['exporter_core_share']:.0%} "
                f"of a core, {x['cpu_per_1000_events_ms']:.2f} ms CPU per 1,000 events")
            self.stop(exp)
            self.stop(sim)
        return results

    # -------------------------------------------------------------------- e2e

    def run_e2e(self):
        a = self.args
        n = a.e2e_things
        fleet, iccids_file = self.fleet(n)
        sim, sim_url = self.start_sim(f"sim-e2e-{n}", n)
        exp, url = self.start_exporter(f"e2e-{n}", sim_url, iccids_file, "3600s", "0")
        procs = [sim, exp]
        self.wait_first_refresh("e2e", exp, url, sim, n, 600)
        m0 = exporter_metrics(url)
        rng = random.Random(a.seed + 1)
        picks = rng.sample([i for i, _ in fleet], a.e2e_events)
        webhook = KeepAlive(url)
        time.sleep(2)
        # Idle rate, over 3 quiet seconds.
        s0, _ = exp.sched_seconds()
        t0 = time.monotonic()
        time.sleep(3)
        idle_rate = (exp.sched_seconds()[0] - s0) / (time.monotonic() - t0)
        each = []
        for iccid in picks:
            status0 = sim_stats(sim_url)["status"]
            (c0, tids0), t0 = exp.sched_seconds(), time.monotonic()
            stat0 = exp.cpu_seconds()
            code, text = webhook.request("POST", f"/webhook?token={WEBHOOK_TOKEN}",
                                         json.dumps(short_event(iccid)).encode(),
                                         {"Content-Type": "application/json"})
            if code != 202:
                raise BenchError(f"POST /webhook answered {code}: {text[:200]!r}")
            wait_until("the hinted status request", lambda: sim_stats(sim_url)["status"] > status0,
                       30, procs, interval=0.005)
            seen = time.monotonic() - t0
            time.sleep(0.5)
            (c1, tids1), t1 = exp.sched_seconds(), time.monotonic()
            stat1 = exp.cpu_seconds()
            # A thread that started counts whole; one that ended took its time along.
            if not tids0 <= tids1:
                warn(f"[e2e] a thread ended around the event for {iccid}: sample dropped")
                continue
            each.append({"iccid": iccid, "cpu_ms": 1000 * (c1 - c0 - idle_rate * (t1 - t0)),
                         "raw_cpu_ms": 1000 * (c1 - c0), "stat_cpu_ms": 1000 * (stat1 - stat0),
                         "threads_started": len(tids1 - tids0),
                         "request_seen_s": round(seen, 4)})
            time.sleep(0.5)
        webhook.close()
        m1 = exporter_metrics(url)
        count, total, _ = histogram_delta(
            histogram(m0, "monogoto_webhook_event_to_answer_seconds"),
            histogram(m1, "monogoto_webhook_event_to_answer_seconds"))
        cpu = [x["cpu_ms"] for x in each]
        r = {"things": n, "events": len(each), "idle_cpu_ms_per_s": round(1000 * idle_rate, 3),
             "cpu_ms_median": median(cpu), "cpu_ms_min": min(cpu), "cpu_ms_max": max(cpu),
             "event_to_answer_count": count,
             "event_to_answer_mean_s": total / count if count else None,
             "hinted_polls": metric(m1, "monogoto_webhook_hinted_polls_total")
             - metric(m0, "monogoto_webhook_hinted_polls_total"),
             "each": each}
        log(f"[e2e] N={n}: CPU per hinted event median {r['cpu_ms_median']:.2f} ms "
            f"(min {r['cpu_ms_min']:.2f}, max {r['cpu_ms_max']:.2f}); idle "
            f"{r['idle_cpu_ms_per_s']} ms/s; event_to_answer mean {r['event_to_answer_mean_s']}")
        self.stop(exp)
        self.stop(sim)
        return r


# --------------------------------------------------------------------------


def fmt(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def latency_table(r):
    slot = r["slot_formula_s"]
    rows = [f"N = {r['things']:,}, budget {r['budget']}, interval {r['interval']}, inactive "
            f"interval {r['inactive_interval']}; refresh target {r['target_s']:.2f} s; passes "
            f"{min(r['pass_walls_s'], default=0):.1f} to {max(r['pass_walls_s'], default=0):.1f} s; "
            f"slot {slot * 1000:.1f} ms (1 / {r['sustained_rps']:.2f} requests/s; the plan's "
            f"target / requests per refresh: {fmt(r['slot_plan_s'] and r['slot_plan_s'] * 1000, 1)} ms)",
            "",
            "| change | n | median | p90 | worst | median in slots | worst in slots "
            "| read before (median) | 429s (simulator / exporter) | hinted polls |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, label in (("event", "flip + event"), ("baseline", "flip only")):
        s = r.get(key)
        if not s:
            continue
        rows.append(
            f"| {label} | {s['changes'] - s['timed_out']} | {s['median_s']:.3f} s | {s['p90_s']:.3f} s "
            f"| {s['worst_s']:.3f} s | {s['median_slots']:.2f} | {s['worst_slots']:.2f} "
            f"| {s['median_lower_s']:.3f} s | {s['429_sim']} / {s['429_exporter']:.0f} "
            f"| {s['hinted_polls']:.0f} |")
    e = r.get("event", {}).get("event_to_answer")
    if e:
        shown = []
        for le, v in e["buckets"]:
            if le != "+Inf" and v:
                shown.append(f"≤{le}: {v:.0f}")
                if v >= e["count"]:
                    break
        cum = ", ".join(shown)
        rows += ["", f"monogoto_webhook_event_to_answer_seconds over the event run: "
                     f"{e['count']:.0f} observations, mean {fmt(e['mean_s'])} s; cumulative {cum}"]
    rows.append(f"warm-up (first pass) 429s: simulator {r['warm_up_429_sim']}, exporter "
                f"{r['warm_up_429_exporter']:.0f}")
    return "\n".join(rows)


def throughput_table(t):
    rows = ["| events | bytes/event | client | events/s | exporter CPU (share of its core) "
            "| CPU per 1,000 events (stat / schedstat) | other processes |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for shape in ("short", "full"):
        x = t.get(shape)
        if not x:
            continue
        rows.append(
            f"| {shape} | {x['event_bytes']} | {x['client'].get('command', '')} "
            f"| {x['events_per_s']:,.0f} | {x['exporter_cpu_s']:.2f} s ({x['exporter_core_share']:.0%}) "
            f"| {fmt(x['cpu_per_1000_events_ms'], 2)} / {fmt(x['sched_per_1000_events_ms'], 2)} ms "
            f"| {x['foreign_cpu_share']:.0%} |")
    return "\n".join(rows)


def machine_info(binary):
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for key, argv in (("exporter_version", [binary, "--version"]), ("wrk", ["wrk", "--version"])):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            info[key] = (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            info[key] = None
    return info


def main():
    parser = argparse.ArgumentParser(
        description="Webhook hints benchmark of monogoto-exporter against its simulator.",
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=DEFAULT_BIN, help=f"exporter binary (default {DEFAULT_BIN})")
    parser.add_argument("--things", type=int, default=10_000,
                        help="SIMs of the latency and throughput scenarios (default 10000)")
    parser.add_argument("--budget", default="60/s,1000/min",
                        help="budget of the simulator and the exporter (default 60/s,1000/min)")
    parser.add_argument("--interval", default="1s", help="--poll.interval (default 1s)")
    parser.add_argument("--inactive-interval", default="60s",
                        help="--poll.inactive-interval (default 60s)")
    parser.add_argument("--changes", type=int, default=100, help="changes with an event (default 100)")
    parser.add_argument("--baseline-changes", type=int, default=100,
                        help="changes without an event (default 100)")
    parser.add_argument("--poll-every", type=float, default=0.02,
                        help="seconds between /metrics reads after a change with an event")
    parser.add_argument("--baseline-poll-every", type=float, default=0.1,
                        help="seconds between /metrics reads after a change without one")
    parser.add_argument("--baseline-spacing", type=float, default=1.0,
                        help="mean seconds between the flips without an event, which overlap "
                             "(exponential gaps, blind to the passes); 0: one after the other "
                             "like the changes with an event (default 1.0)")
    parser.add_argument("--throughput-things", type=int, default=None,
                        help="SIMs of the throughput scenario (default: --things)")
    parser.add_argument("--throughput-seconds", type=int, default=10)
    parser.add_argument("--throughput-clients", type=int, default=4)
    parser.add_argument("--python-clients", action="store_true",
                        help="post with Python threads even when wrk is there")
    parser.add_argument("--exporter-core", type=int, default=1)
    parser.add_argument("--client-core", type=int, default=0)
    parser.add_argument("--e2e-things", type=int, default=100_000)
    parser.add_argument("--e2e-events", type=int, default=20)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--only", default="latency,throughput,e2e",
                        help="scenarios to run, comma separated (default all)")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures here")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()

    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if only - {"latency", "throughput", "e2e"}:
        parser.error(f"unknown scenario in --only: {sorted(only - {'latency', 'throughput', 'e2e'})}")
    if not os.path.isabs(args.bin):
        args.bin = os.path.abspath(os.path.join(REPO, args.bin) if args.bin == DEFAULT_BIN
                                   else args.bin)
    if not os.access(args.bin, os.X_OK):
        raise BenchError(f"no executable exporter binary at {args.bin} "
                         "(cargo build --release --locked)")
    if "throughput" in only and shutil.which("taskset") is None:
        raise BenchError("taskset is needed for the throughput scenario (util-linux)")

    logdir = tempfile.mkdtemp(prefix="push-bench-")
    bench = Bench(args, logdir)
    ok = False

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    out = {"argv": sys.argv}
    try:
        info = machine_info(args.bin)
        out["machine"] = info
        log(f"machine: {info}")
        if "latency" in only:
            out["latency"] = bench.run_latency()
            bench.stop_all()
        if "throughput" in only:
            out["throughput"] = bench.run_throughput()
            bench.stop_all()
        if "e2e" in only:
            out["e2e"] = bench.run_e2e()
            bench.stop_all()
        print(f"{info.get('exporter_version')}; {info.get('nproc')} x "
              f"{info.get('cpu')}, Linux {info.get('kernel')}")
        if "latency" in out:
            print()
            print(latency_table(out["latency"]))
        if "throughput" in out:
            t = out["throughput"]
            print()
            print(f"Receiver throughput: N = {t['things']:,}, exporter on core {t['exporter_core']}, "
                  f"clients on core {t['client_core']}, {t['clients']} connections, "
                  f"{t['seconds']} s, bodies of {EVENTS_PER_BODY} events")
            print()
            print(throughput_table(t))
        if "e2e" in out:
            e = out["e2e"]
            print()
            print(f"One hinted event end to end at N = {e['things']:,} (no budget, idle exporter): "
                  f"CPU median {e['cpu_ms_median']:.2f} ms, min {e['cpu_ms_min']:.2f}, max "
                  f"{e['cpu_ms_max']:.2f} over {e['events']} events; event_to_answer mean "
                  f"{fmt(e['event_to_answer_mean_s'], 4)} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)
                f.write("\n")
        ok = True
    finally:
        bench.stop_all()
        if ok and not args.keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            log(f"logs kept in {logdir}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"push-bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("push-bench: interrupted", file=sys.stderr)
        sys.exit(130)
