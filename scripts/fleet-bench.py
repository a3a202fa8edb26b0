#!/usr/bin/env python3
"""End-to-end fleet benchmark: the simulator and the exporter as separate processes.

    scripts/fleet-bench.py --things 1000,10000,100000 [--bin target/release/monogoto-exporter]
                           [--clients 4] [--duration 10] [--refreshes 3] [--json PATH]
                           [--wait-quiet SECONDS] [--retries K] [--keep-logs]
    scripts/fleet-bench.py --things 1000,10000,100000 --budget 60/s,1000/min
                           [--budget-interval 1s] [--budget-inactive-interval 60s]
                           [--refreshes 3] [--json PATH]
    scripts/fleet-bench.py --things 1000 --budget 30/s,600/min --mixed
                           [--budget-interval 1s] [--budget-inactive-interval 60s]
                           [--refreshes 3] [--json PATH]
    scripts/fleet-bench.py --things 100000 --restart [--restart-interval 10s]
                           [--restart-run 190] [--writes 3] [--restarts 3] [--json PATH]
    scripts/fleet-bench.py --things 600 --budget 4/s,20/10s --restart
                           [--budget-interval 1s] [--downtime 2] [--crash-loop 12]
                           [--json PATH]

For each fleet size N it starts `monogoto-exporter simulate` on a free loopback
port, then three exporters against it, one after the other (never two at once,
so they do not compete for the CPU):

  idle     --poll.interval 3600s: one refresh (discovery + status), then nothing.
           Gives the requests of a first refresh, the first refresh's wall time,
           the body sizes and the /metrics latency with no refresh running.
  cycle    --poll.interval max(5s, 2 x first refresh + 1s), nothing scrapes it.
           Gives the CPU time of steady refreshes (cached discovery list): the
           exporter's utime+stime from /proc/PID/stat, sampled in the quiet gap
           before and after each refresh. Refreshes are detected with the
           simulator's /_sim/stats request counters, so no scrape adds CPU time.
  busy     --poll.interval 1s --poll.stale-after 1h, the fleet given as an
           --monogoto.iccids-file. At 100k a refresh outlasts its 1 s deadline,
           is cut, and the next one continues at once, so one is always in
           flight; at small N a refresh fills only part of each second, and the
           output says which share of the wrk run overlapped one. Gives the
           /metrics latency while refreshing. (Discovery is bounded by the
           refresh deadline: at 1 s it cannot list a large fleet page by page
           and never completes, hence the ICCID file.)

With --budget SPEC (the budget scenario), the simulator enforces that request
budget (429 over it) and one exporter keeps to the same budget, twice per N:

  all      --poll.inactive-interval 0: every SIM every refresh. After the first
           refresh, the simulator's log of when each Thing was answered gives
           each SIM's longest gap between two answers over REFRESHES refreshes:
           the worst data age it reached. The worst and the median over SIMs
           are set against the physical limit N / (50 x sustained requests per
           second), the freshest any client can keep N SIMs within the budget.
  tiered   the default tiers (SUSPENDED, RETIRED and unknown SIMs once per
           --budget-inactive-interval): the ACTIVE tier's worst age against
           N_active / (50 x the rate left after the inactive tier's share).

The budget is given scaled to seconds: 60/s,1000/min is the standard plan's
60/min,1000/h run 60 times faster, with --budget-interval 1s for 60s and
--budget-inactive-interval 60s for 1h. No wrk is needed for it.

With --budget SPEC --mixed (the mixed-fleet scenario), one exporter follows N
SIMs of which 70 % are ACTIVE, 20 % SUSPENDED, 5 % refused by the API (the
simulator answers 400 "Invalid Input Data" to any status request naming one)
and 5 % unknown to the account (in the exporter's --monogoto.iccids-file, not
in the simulator, which holds the other 95 %). Statuses and refusals are set
through the simulator's control API (POST /_sim/things/ICCID/status and
.../refuse), which costs nothing of the budget. The warm-up is the first
refresh (it sorts the SIMs into tiers and isolates the refused ones, one
bisected batch at a time) and the refreshes ending within the budget's longest
window after it, which that refresh's burst may have used up. Then every
refresh that ends within one --budget-inactive-interval (so that each rarely
polled SIM comes due once; at least REFRESHES refreshes) is a steady pass:
its duration (the exporter's "refresh finished ... seconds=" debug line) is
set against the refresh target the exporter exports
(monogoto_refresh_target_seconds), and the simulator's status request
counter, read as each refresh ends, against the requests_per_refresh of the
exporter's "polling plan" line. Choose a budget under which the ACTIVE tier
does not fit the interval, or the target is the interval and a pass may take
only part of it.

With --restart (the warm-restart scenario, issue 17), what --storage.path
costs and what it saves, at each N without a budget:

  refreshing  two exporters, one without and one with --storage.path (in a
           fresh folder), refresh every --restart-interval for --restart-run
           seconds: cold start (spawn to /readyz 200 and to every SIM served),
           peak RSS (VmHWM), the writes seen, SIGTERM to exit once quiet.
  quiet    --poll.interval 3600s, started from the state the second one
           saved: spawn to /readyz 200 and to every SIM in /metrics; the
           state file's size (monogoto_storage_bytes and the file's); then
           WRITES of the once-a-minute writes timed from outside, with nothing
           else running: inotify on the folder (the temporary file created,
           closed after its fsync, renamed over `state`) and the exporter's CPU
           (threads' schedstat and utime+stime) sampled every 2 ms; then one
           client scraping /metrics back to back (identity and gzip in turn)
           across WRITES more writes, the scrapes overlapping a write set
           against the others; then SIGTERM to exit (the final write seen).
  restarts RESTARTS - 1 more starts from the saved state, timed the same way.

With --restart --budget SPEC (a restart under a budget; issue 17's own is
4/s,20/10s with 600 SIMs, a pass of 6 s), six cases, each on a fresh
simulator enforcing SPEC, with --poll.inactive-interval 0: without and with
--storage.path, the exporter is stopped halfway through its third pass by
SIGTERM, or by SIGKILL, or killed and followed by --crash-loop exporters each
SIGKILLed within a second, then started again after --downtime seconds. Gives
the SIMs missing from /metrics at the restarted exporter's first /readyz 200,
the simulator's 429s from the stop to the end of the first and second
refreshes after the restart, and the longest any SIM went between two
answers across it (the simulator's poll log), against a pass plus the time
down.

Latency comes from wrk (-t2 -c CLIENTS -d DURATION --latency --timeout 60s),
once plain and once with Accept-Encoding: gzip. Peak RSS is the largest VmHWM
of the three exporters, read from /proc/PID/status just before each is stopped.

The machine's CPU time (/proc/stat) minus this script's and its children's
says how much other processes used meanwhile; over 5 % of the CPUs, the
figures of that N are flagged (and measured again with --retries).

Never talks to anything but 127.0.0.1. Python 3 standard library only; needs wrk.
"""

import argparse
import ctypes
import ctypes.util
import datetime
import http.client
import json
import math
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join("target", "release", "monogoto-exporter")
TOKEN = "sim-static-token"
BATCH = 50
THINGS_PAGE = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1e6
# Share of the CPUs other processes may use during one N before its figures count as skewed.
NOISY = 0.05
# The mixed fleet: shares of the N SIMs followed; the rest are ACTIVE.
MIXED_SUSPENDED = 0.20
MIXED_REFUSED = 0.05
MIXED_UNKNOWN = 0.05


class BenchError(Exception):
    """A failure worth one clear line, and a non-zero exit."""


# --------------------------------------------------------------------------
# Processes


class Proc:
    """A child process with its log file; stopped by pid."""

    def __init__(self, name, argv, logdir, env=None):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        self.log = open(self.log_path, "wb")
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def check_alive(self):
        if not self.alive():
            raise BenchError(
                f"{self.name} (pid {self.pid}) exited with code {self.popen.returncode}:\n"
                + self.log_tail()
            )

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
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def sched_seconds(self):
        """(seconds on CPU, thread ids) of the live threads, from /proc/PID/task/*/schedstat.

        Nanosecond resolution, unlike the clock ticks of cpu_seconds(), but a
        thread that exits takes its time with it: a difference of two samples
        holds only when both saw the same threads."""
        total, tids = 0, set()
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                tids.add(tid)
            except (OSError, ValueError, IndexError):
                pass
        return total / 1e9, frozenset(tids)

    def memory_kib(self):
        """(VmRSS, VmHWM) in KiB."""
        values = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
        return values.get("VmRSS", 0), values.get("VmHWM", 0)

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
        values = [int(v) for v in f.readline().split()[1:9]]  # guest time is in user already
    total = sum(values)
    return (total - values[3] - values[4]) / CLK_TCK, total / CLK_TCK


def own_cpu():
    """CPU seconds of this script and of its children that were waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def machine_busy_share(seconds=1.0):
    """Share of all CPUs busy over `seconds`."""
    busy0, total0 = machine_cpu()
    time.sleep(seconds)
    busy1, total1 = machine_cpu()
    return (busy1 - busy0) / max(1e-9, total1 - total0)


def wait_quiet(timeout, window=5.0, threshold=0.10):
    """Waits up to `timeout` seconds for `window` seconds in which the machine is idle."""
    deadline = time.monotonic() + timeout
    while True:
        busy = machine_busy_share(window)
        if busy <= threshold:
            return
        if time.monotonic() > deadline:
            warn(f"the machine is still {busy:.0%} busy after waiting {timeout:.0f}s; measuring anyway")
            return
        log(f"waiting for a quiet machine ({busy:.0%} of the CPUs busy)")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# HTTP (urllib; never decompresses)


def http_get(url, headers=None, timeout=60.0):
    """(status, headers, raw body bytes); connection errors raise OSError."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait_until(what, check, timeout, procs=(), interval=0.1):
    """Calls check() until it returns a true value, which is returned."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        for p in procs:
            p.check_alive()
        try:
            value = check()
            if value:
                return value
        except OSError as e:  # connection refused, reset, timeout
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


WANTED = (
    "monogoto_refresh_duration_seconds",
    "monogoto_things_reported",
    "monogoto_things_configured",
    "monogoto_up",
    "monogoto_last_refresh_success_timestamp_seconds",
    "monogoto_refresh_target_seconds",
    "monogoto_things_inactive",
    "monogoto_api_budget_wait_seconds_total",
    "monogoto_api_rate_limited_total",
    "monogoto_storage_bytes",
    "monogoto_storage_loaded_things",
    "monogoto_storage_last_write_success_timestamp_seconds",
    "monogoto_storage_write_failures_total",
)


def scrape_health(exporter_url):
    """The exporter's own unlabelled health gauges, from one identity scrape."""
    status, _, body = http_get(exporter_url + "/metrics", timeout=120)
    if status != 200:
        raise BenchError(f"exporter /metrics answered {status}")
    found = {}
    for line in body.split(b"\n"):
        if line.startswith(b"monogoto_exporter_build_info{"):
            found["build_info"] = line.decode().partition("{")[2].rpartition("}")[0]
        elif line.startswith(b"monogoto_api_requests_total{") and b'code="429"' in line:
            found["api_429"] = found.get("api_429", 0.0) + float(line.split()[-1])
        elif line.startswith(b"monogoto_") and not line.startswith(b"monogoto_thing_"):
            name, _, value = line.decode().partition(" ")
            if name in WANTED:
                found[name] = float(value.split()[0])
    return found


def body_sizes(exporter_url):
    """Raw /metrics body bytes: identity, and gzip as sent (not decompressed)."""
    status, headers, plain = http_get(exporter_url + "/metrics", timeout=120)
    if status != 200:
        raise BenchError(f"exporter /metrics answered {status}")
    status, headers, gz = http_get(
        exporter_url + "/metrics", {"Accept-Encoding": "gzip"}, timeout=120
    )
    if status != 200:
        raise BenchError(f"exporter /metrics (gzip) answered {status}")
    if (headers.get("Content-Encoding") or "").lower() != "gzip":
        raise BenchError("exporter /metrics did not answer gzip to Accept-Encoding: gzip")
    return len(plain), len(gz)


# --------------------------------------------------------------------------
# wrk

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
LATENCY_LINE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m|h)\s*$")


def parse_wrk(text):
    """p50/p75/p90/p99 in ms, requests, errors and Requests/sec from wrk --latency output."""
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
    if "p50_ms" not in out or "p99_ms" not in out:
        raise BenchError("could not read the latency distribution from wrk:\n" + text)
    return out


def run_wrk(url, clients, duration, gzip, procs):
    threads = min(2, clients)
    argv = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration}s", "--latency", "--timeout", "60s"]
    if gzip:
        argv += ["-H", "Accept-Encoding: gzip"]
    argv.append(url)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + 120, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from None
    for p in procs:
        p.check_alive()
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    result = parse_wrk(done.stdout)
    result["command"] = " ".join(argv[:-1] + [url])
    if result["requests"] == 0:
        raise BenchError("wrk completed no request:\n" + done.stdout)
    if result["non_2xx"] or result["socket_errors"] or result["timeouts"]:
        warn(
            f"wrk saw {result['non_2xx']} non-2xx answers, {result['socket_errors']} socket errors "
            f"and {result['timeouts']} timeouts against {url} (gzip={gzip})"
        )
    return result


class RefreshWatcher(threading.Thread):
    """Samples the simulator's status counter every 50 ms while wrk runs.

    The share of 50 ms slots in which the counter moved says how much of the
    run saw status requests flowing: it misses a refresh's CPU work after its
    last request, and falls when scrapes starve the refresh."""

    SLOT = 0.05

    def __init__(self, sim_url):
        super().__init__(daemon=True)
        self.sim_url = sim_url
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                self.samples.append((time.monotonic(), sim_stats(self.sim_url)["status"]))
            except (OSError, BenchError, ValueError):
                pass
            self.halt.wait(self.SLOT)

    def finish(self, batches):
        self.halt.set()
        self.join(timeout=10)
        pairs = list(zip(self.samples, self.samples[1:]))
        if not pairs:
            return {}
        moved = sum(1 for (_, a), (_, b) in pairs if b != a)
        requests = self.samples[-1][1] - self.samples[0][1]
        elapsed = self.samples[-1][0] - self.samples[0][0]
        return {
            "status_requests_during": requests,
            "refreshes_during": round(requests / batches, 2),
            "status_requests_per_s": round(requests / elapsed, 1) if elapsed > 0 else None,
            "status_flowing_share": round(moved / len(pairs), 3),
        }


def scrape_load(url, clients, duration, gzip, procs, sim_url, batches, refresh_log=None):
    """wrk against url, with the refreshes that overlapped it.

    With refresh_log (an exporter log at poller=debug), the share of the run
    with a refresh in flight, from the exporter's own "refresh finished" lines."""
    watcher = RefreshWatcher(sim_url)
    watcher.start()
    started = time.time()
    try:
        result = run_wrk(url, clients, duration, gzip, procs)
    finally:
        ended = time.time()
        result_overlap = watcher.finish(batches)
    result.update(result_overlap)
    result["window_unix_s"] = [round(started, 3), round(ended, 3)]
    if refresh_log:
        result.update(refresh_overlap(refresh_log, started, ended, procs))
    return result


REFRESH_LINE = re.compile(
    r"^(\S+)\s+DEBUG\s+monogoto_exporter::poller: refresh finished .*?\bthings=(\d+)\b.*?\bseconds=([0-9.e-]+)"
)


def refresh_intervals(log_path):
    """(start, end, things) in Unix seconds of every refresh in an exporter log."""
    with open(log_path, encoding="utf-8", errors="replace") as f:
        return [r for r in map(refresh_of, f) if r]


def refresh_of(line):
    """(start, end, things) of a "refresh finished" log line, else None."""
    m = REFRESH_LINE.match(line)
    if not m:
        return None
    stamp = m.group(1).replace("Z", "+00:00")
    # At most microseconds for fromisoformat.
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp)
    try:
        end = datetime.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
    return (end - float(m.group(3)), end, int(m.group(2)))


def refresh_overlap(log_path, started, ended, procs, timeout=60):
    """Share of [started, ended] with a refresh in flight, and those refreshes' walls."""
    # The refresh running when wrk stopped ends a little later: wait for its line.
    deadline = time.monotonic() + timeout
    while True:
        intervals = refresh_intervals(log_path)
        if intervals and intervals[-1][1] >= ended:
            break
        if time.monotonic() > deadline:
            warn(f"no refresh ended after the wrk run within {timeout}s; the overlap is a lower bound")
            break
        for p in procs:
            p.check_alive()
        time.sleep(0.2)
    covered, walls = 0.0, []
    for start, end, _ in intervals:
        lo, hi = max(start, started), min(end, ended)
        if hi > lo:
            covered += hi - lo
            walls.append(round(end - start, 3))
    if not intervals:
        warn(f"no 'refresh finished' line in {log_path}: the log format changed?")
        return {}
    return {
        "refreshing_share": round(min(1.0, covered / (ended - started)), 3),
        "refresh_walls_during_s": walls,
    }


# --------------------------------------------------------------------------
# Warm restarts (--restart): the state kept under --storage.path

THING_INFO = re.compile(rb'^monogoto_thing_info\{iccid="([^"]*)"', re.M)
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
# A write of the state starts after this long without exporter CPU (quiet runs
# only): the idle exporter wakes briefly every second or two, a write is one
# unbroken burst up to its temporary file.
QUIET_BEFORE_WRITE = 0.05


def served_iccids(exporter_url):
    """The ICCIDs /metrics serves (one monogoto_thing_info series each)."""
    status, _, body = http_get(exporter_url + "/metrics", timeout=120)
    if status != 200:
        raise BenchError(f"exporter /metrics answered {status}")
    return {m.decode() for m in THING_INFO.findall(body)}


def sim_polls(sim_url):
    _, _, body = http_get(sim_url + "/_sim/polls", timeout=30)
    return json.loads(body)


class DirWatch(threading.Thread):
    """inotify on a folder (through ctypes): (monotonic time, mask, name) of
    each file created, closed after writing, or renamed into it."""

    def __init__(self, path):
        super().__init__(daemon=True)
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            raise BenchError(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        if libc.inotify_add_watch(self.fd, os.fsencode(path),
                                  IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            raise BenchError(f"inotify_add_watch {path}: {os.strerror(ctypes.get_errno())}")
        self.events = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            at = time.monotonic()
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            offset, found = 0, []
            while offset + 16 <= len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16:offset + 16 + length].rstrip(b"\0").decode(errors="replace")
                offset += 16 + length
                found.append((at, mask, name))
            with self.lock:
                self.events.extend(found)

    def stop(self):
        self.halt.set()
        self.join(timeout=2)
        os.close(self.fd)

    def writes(self, name="state"):
        """(created, closed, renamed) of each whole write of `name`: its
        temporary file created, closed after the flush, renamed over it."""
        tmp = f".{name}.tmp"
        with self.lock:
            events = list(self.events)
        out, created, closed = [], None, None
        for at, mask, file in events:
            if file == tmp and mask & IN_CREATE:
                created, closed = at, None
            elif file == tmp and mask & IN_CLOSE_WRITE and created is not None:
                closed = at
            elif file == name and mask & IN_MOVED_TO and created is not None:
                out.append((created, closed, at))
                created, closed = None, None
        return out


class CpuSampler(threading.Thread):
    """Samples an exporter's CPU every `every` seconds: the threads' run time
    (schedstat, ns) and utime+stime (/proc/PID/stat, clock ticks)."""

    def __init__(self, proc, every=0.002):
        super().__init__(daemon=True)
        self.proc, self.every = proc, every
        self.samples = []
        self.halt = threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            try:
                sched, tids = self.proc.sched_seconds()
                self.samples.append((time.monotonic(), sched, self.proc.cpu_seconds(), tids))
            except (OSError, ValueError):
                pass
            self.halt.wait(self.every)

    def stop(self):
        self.halt.set()
        self.join(timeout=2)

    def write_burst(self, created, closed, renamed):
        """The CPU burst of one state write of a process that does nothing
        else: from the last sample of the quiet stretch before it to the last
        sample that moved within 0.5 s after the rename. None when the
        samples do not show a quiet stretch before it."""
        s = [x for x in self.samples if renamed - 10 <= x[0] <= renamed + 0.5]
        if len(s) < 3:
            return None
        i_r = max(i for i, x in enumerate(s) if x[0] <= renamed)
        # Walk back to the start of the burst: the last sample after which
        # the CPU moved, preceded by QUIET_BEFORE_WRITE of stillness.
        start = None
        for i in range(i_r, 0, -1):
            if s[i][1] != s[i - 1][1]:
                j = i - 1
                k = j
                while k > 0 and s[k - 1][1] == s[j][1]:
                    k -= 1
                if s[j][0] <= created and s[j][0] - s[k][0] >= QUIET_BEFORE_WRITE:
                    start = j
                    break
        if start is None:
            return None
        end = i_r
        for i in range(i_r + 1, len(s)):
            if s[i][1] != s[i - 1][1]:
                end = i
        # A thread that ended meanwhile took its run time with it.
        same_threads = s[start][3] <= s[end][3]
        return {
            "wall_s": round(max(s[end][0], renamed) - s[start][0], 4),
            "encode_s": round(created - s[start][0], 4),
            "file_write_sync_s": round((closed or renamed) - created, 4),
            "rename_dir_sync_s": round(max(s[end][0], renamed) - (closed or renamed), 4),
            "cpu_schedstat_s": round(s[end][1] - s[start][1], 4) if same_threads else None,
            "cpu_stat_s": round(s[end][2] - s[start][2], 3),
            "sample_gap_s": round(max(b[0] - a[0] for a, b in zip(s[start:end + 1], s[start + 1:end + 1]))
                                  if end > start else 0.0, 4),
        }

    def idle_cpu_per_s(self, bursts):
        """Exporter CPU per second outside the write bursts, from schedstat."""
        if len(self.samples) < 2:
            return None
        cpu, span = 0.0, 0.0
        for a, b in zip(self.samples, self.samples[1:]):
            if any(lo <= a[0] <= hi for lo, hi in bursts):
                continue
            if a[3] == b[3]:
                cpu += b[1] - a[1]
                span += b[0] - a[0]
        return round(cpu / span, 5) if span else None


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_summary(values):
    return {"count": len(values),
            "p50_ms": percentile(values, 0.5), "p99_ms": percentile(values, 0.99),
            "max_ms": max(values) if values else None}


def scrape_loop(url, until, halt=None):
    """Scrapes /metrics one after the other, alternately identity and gzip,
    on one keep-alive connection until `until` (monotonic): (encoding, start,
    end, status, bytes) of each."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    out = []
    try:
        while time.monotonic() < until and not (halt and halt()):
            for name, headers in (("identity", {}), ("gzip", {"Accept-Encoding": "gzip"})):
                t0 = time.monotonic()
                conn.request("GET", "/metrics", headers=headers)
                response = conn.getresponse()
                body = response.read()
                out.append((name, t0, time.monotonic(), response.status, len(body)))
    finally:
        conn.close()
    return out


def timed_stop(proc, sig, timeout=60):
    """Sends `sig` and waits for the exit: (seconds to exit, exit code)."""
    t0 = time.monotonic()
    proc.popen.send_signal(sig)
    try:
        code = proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait(timeout=10)
        raise BenchError(f"{proc.name} did not exit within {timeout}s of signal {sig}")
    return round(time.monotonic() - t0, 4), code


TOOK_BACK = re.compile(r"took back the saved state.*")
LOG_FIELD = re.compile(r'\b(served|stale|followed|oldest_answer_age)=("[^"]*"|\S+)')


def took_back_line(log_path):
    """The fields of the exporter's "took back the saved state" line, if any."""
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if TOOK_BACK.search(line):
                return {k: v.strip('"') for k, v in LOG_FIELD.findall(line)}
    return None


# --------------------------------------------------------------------------
# The benchmark of one fleet size


def warn(message):
    print("warning: " + message, file=sys.stderr, flush=True)


def log(message):
    print(message, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args, logdir):
        self.args = args
        self.logdir = logdir
        self.procs = []

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

    def exporter_argv(self, sim_url, port, interval, extra, log_level, budget="0"):
        return [
            self.args.bin,
            "--monogoto.url", sim_url,
            "--monogoto.rate-limit", budget,
            "--poll.concurrency", "4",
            "--poll.timeout", "30s",
            "--poll.interval", interval,
            "--web.listen-address", f"127.0.0.1:{port}",
            "--log.level", log_level,
        ] + extra

    def start_exporter(self, name, sim_url, interval, extra, log_level="warn", budget="0"):
        port = free_port()
        env = dict(os.environ, MONOGOTO_TOKEN=TOKEN)
        env.pop("RUST_LOG", None)
        argv = self.exporter_argv(sim_url, port, interval, extra, log_level, budget)
        proc = self.start(name, argv, env)
        url = f"http://127.0.0.1:{port}"
        return proc, url

    def wait_ready(self, proc, url, sim):
        def ready():
            status, _, _ = http_get(url + "/readyz", timeout=5)
            return status == 200

        wait_until(
            f"{proc.name} /readyz", ready, self.args.ready_timeout, [sim, proc], interval=0.05
        )

    def run_one(self, n):
        a = self.args
        batches = math.ceil(n / BATCH)
        r = {"things": n, "batches": batches}
        r["machine_busy_before"] = round(machine_busy_share(), 3)
        if r["machine_busy_before"] > 0.15:
            warn(f"before N={n}, {r['machine_busy_before']:.0%} of the CPUs are busy with other "
                 "processes: the figures will be skewed")
        self.machine0, self.own0 = machine_cpu(), own_cpu()

        sim_port = free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        log(f"[N={n}] simulator on {sim_url}")
        sim = self.start(
            f"sim-{n}",
            [a.bin, "simulate", "--listen", f"127.0.0.1:{sim_port}", "--things", str(n),
             "--seed", "1", "--log.level", "warn"],
        )
        wait_until("the simulator's /_sim/stats", lambda: sim_stats(sim_url) is not None,
                   a.ready_timeout, [sim])

        # ---- idle: first refresh, bodies, idle latency
        base = sim_stats(sim_url)
        exp, url = self.start_exporter(f"idle-{n}", sim_url, "3600s", ["--monogoto.discover"])
        started = time.monotonic()
        cpu0 = exp.cpu_seconds()
        self.wait_ready(exp, url, sim)
        ready_after = time.monotonic() - started
        cpu_ready = exp.cpu_seconds() - cpu0
        after = sim_stats(sim_url)
        health = scrape_health(url)
        r["build_info"] = health.get("build_info")
        r["first_refresh"] = {
            "status_requests": after["status"] - base["status"],
            "discovery_requests": after["things"] - base["things"],
            "auth_requests": after["auth"] - base["auth"],
            "wall_s": health.get("monogoto_refresh_duration_seconds"),
            "ready_after_start_s": round(ready_after, 3),
            "cpu_start_to_ready_s": round(cpu_ready, 3),
            "things_reported": health.get("monogoto_things_reported"),
            "up": health.get("monogoto_up"),
        }
        log(f"[N={n}] first refresh: {r['first_refresh']}")
        if health.get("monogoto_up") != 1.0:
            raise BenchError(f"N={n}: the first refresh did not succeed (monogoto_up != 1):\n"
                             + exp.log_tail())
        if health.get("monogoto_things_reported") != n:
            raise BenchError(f"N={n}: the exporter reports "
                             f"{health.get('monogoto_things_reported')} Things, expected {n}")
        identity, gz = body_sizes(url)
        r["body_identity_bytes"], r["body_gzip_bytes"] = identity, gz
        r["idle"] = {
            name: scrape_load(url + "/metrics", a.clients, a.duration, gzip, [sim, exp],
                              sim_url, batches)
            for name, gzip in (("identity", False), ("gzip", True))
        }
        if any(r["idle"][k].get("status_requests_during") for k in ("identity", "gzip")):
            warn(f"N={n}: the idle exporter refreshed during its wrk runs")
        log(f"[N={n}] idle p50/p99 identity {fmt_pair(r['idle']['identity'])} ms, "
            f"gzip {fmt_pair(r['idle']['gzip'])} ms")
        r["idle"]["discovery_requests_during"] = sim_stats(sim_url)["things"] - after["things"]
        rss, hwm = exp.memory_kib()
        r["rss_kib"] = {"idle": {"VmRSS": rss, "VmHWM": hwm}}
        self.stop(exp)

        # ---- cycle: CPU per steady refresh, nothing scrapes the exporter
        first_wall = r["first_refresh"]["wall_s"] or ready_after
        interval = max(5, math.ceil(2 * first_wall + 1))
        r["cycle"] = self.measure_cpu(n, sim, sim_url, interval)
        log(f"[N={n}] cpu per refresh {r['cycle']['cpu_per_refresh_s']:.3f}s "
            f"(each: {r['cycle']['cpu_s']}, schedstat {r['cycle']['schedstat_cpu_s']}), wall {r['cycle']['wall_s']}")
        r["rss_kib"]["cycle"] = r["cycle"].pop("memory")

        # ---- busy: latency while a refresh runs
        r["busy"] = self.measure_busy(n, sim, sim_url, identity)
        r["rss_kib"]["busy"] = r["busy"].pop("memory")
        log(f"[N={n}] busy p50/p99 identity {fmt_pair(r['busy']['identity'])} ms, "
            f"gzip {fmt_pair(r['busy']['gzip'])} ms")

        r["peak_rss_kib"] = max(v["VmHWM"] for v in r["rss_kib"].values())
        self.stop(sim)
        # Every child of this N has been waited for: what the machine spent
        # beyond this script and its children is other processes' load.
        (busy0, total0), (busy1, total1) = self.machine0, machine_cpu()
        foreign = (busy1 - busy0) - (own_cpu() - self.own0)
        r["foreign_cpu_share"] = round(max(0.0, foreign) / max(1e-9, total1 - total0), 3)
        if r["foreign_cpu_share"] > NOISY:
            warn(f"during N={n}, other processes used {r['foreign_cpu_share']:.0%} of the CPUs: "
                 "the figures are skewed; run again on a quiet machine")
        return r

    def run_budget(self, n):
        """The budget scenario: data age per SIM against the physical limit."""
        a = self.args
        rate = sustained_rate(a.budget)
        iccids_file = os.path.join(self.logdir, f"iccids-{n}.txt")
        with open(iccids_file, "w") as f:
            f.write("\n".join(iccid for iccid, _ in self.twin_fleet(n)) + "\n")
        r = {"things": n, "budget": a.budget, "sustained_rps": rate,
             "limit_s": n / (BATCH * rate)}
        for scenario, inactive in (("all", "0"), ("tiered", a.budget_inactive_interval)):
            sim_port = free_port()
            sim_url = f"http://127.0.0.1:{sim_port}"
            sim = self.start(f"sim-{scenario}-{n}", [
                a.bin, "simulate", "--listen", f"127.0.0.1:{sim_port}", "--things", str(n),
                "--seed", "1", "--rate-limit", a.budget, "--log.level", "warn"])
            wait_until("the simulator's /_sim/stats", lambda: sim_stats(sim_url) is not None,
                       a.ready_timeout, [sim])
            exp, url = self.start_exporter(f"{scenario}-{n}", sim_url, a.budget_interval, [
                "--poll.inactive-interval", inactive, "--monogoto.iccids-file", iccids_file],
                budget=a.budget)
            # The first refresh asks every SIM (no tier is known yet).
            wait_until(f"[N={n}] {scenario}: the first refresh",
                       lambda: scrape_health(url).get("monogoto_things_reported") == n,
                       a.ready_timeout + 2 * r["limit_s"], [sim, exp], interval=2)
            health = scrape_health(url)
            target = health.get("monogoto_refresh_target_seconds") or r["limit_s"]
            http_delete(sim_url + "/_sim/polls")
            wait0 = health.get("monogoto_api_budget_wait_seconds_total") or 0.0
            started = time.monotonic()
            period = a.refreshes * target + 1
            log(f"[N={n}] {scenario}: target {target:.1f} s; measuring for {period:.0f} s")
            time.sleep(period)
            _, _, body = http_get(sim_url + "/_sim/polls", timeout=30)
            polls = json.loads(body)
            health = scrape_health(url)
            elapsed = time.monotonic() - started
            inactive_n = health.get("monogoto_things_inactive") or 0
            inactive_rate = math.ceil(inactive_n / BATCH) / parse_seconds(a.budget_inactive_interval) \
                if scenario == "tiered" else 0.0
            active_limit = (n - inactive_n) / (BATCH * max(1e-9, rate - inactive_rate))
            r[scenario] = {
                "target_s": target,
                "refresh_s": health.get("monogoto_refresh_duration_seconds"),
                "up": health.get("monogoto_up"),
                "inactive": inactive_n,
                "budget_wait_per_s": round(((health.get("monogoto_api_budget_wait_seconds_total")
                                             or 0.0) - wait0) / elapsed, 3),
                "refusals_429": polls["budget_refusals"],
                "measured": polls["measured"],
                "worst_age_s": polls["worst_gap_seconds"],
                "median_age_s": polls["median_gap_seconds"],
                "active_worst_age_s": polls["worst_gap_seconds_of_selection"],
                "active_limit_s": active_limit,
                "peak_rss_kib": exp.memory_kib()[1],
            }
            log(f"[N={n}] {scenario}: {r[scenario]}")
            self.stop(exp)
            self.stop(sim)
        return r

    def twin_fleet(self, n):
        """(ICCID, State) of each Thing of the simulated fleet of n, in fleet order.

        The fleet is fixed by seed and size: it is listed from an unlimited
        twin, so that listing spends nothing of a budgeted simulator's."""
        a = self.args
        port = free_port()
        twin = self.start(f"twin-{n}", [a.bin, "simulate", "--listen", f"127.0.0.1:{port}",
                                        "--things", str(n), "--seed", "1", "--log.level", "warn"])
        twin_url = f"http://127.0.0.1:{port}"
        wait_until("the twin simulator", lambda: sim_stats(twin_url) is not None,
                   a.ready_timeout, [twin])
        fleet = list_fleet(twin_url, n, states=True)
        self.stop(twin)
        return fleet

    def run_mixed(self, n):
        """The mixed-fleet scenario: a steady pass under the budget against the logged target."""
        a = self.args
        rate = sustained_rate(a.budget)
        refused_n, unknown_n = round(n * MIXED_REFUSED), round(n * MIXED_UNKNOWN)
        suspended_n = round(n * MIXED_SUSPENDED)
        sim_n = n - unknown_n
        fleet = self.twin_fleet(sim_n)
        # Which Things are refused and which SUSPENDED: spread over the fleet
        # (hence over the batches), the same on every run.
        order = list(range(sim_n))
        random.Random(1).shuffle(order)
        refused = {fleet[i][0] for i in order[:refused_n]}
        suspended = {fleet[i][0] for i in order[refused_n:refused_n + suspended_n]}
        unknown = unknown_iccids(unknown_n)
        iccids_file = os.path.join(self.logdir, f"iccids-mixed-{n}.txt")
        with open(iccids_file, "w") as f:
            f.write("\n".join(spread([iccid for iccid, _ in fleet], unknown)) + "\n")
        r = {"things": n, "budget": a.budget, "sustained_rps": rate,
             "interval": a.budget_interval, "inactive_interval": a.budget_inactive_interval,
             "fleet": {"active": sim_n - refused_n - suspended_n, "suspended": suspended_n,
                       "refused": refused_n, "unknown": unknown_n}}

        sim_port = free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        sim = self.start(f"sim-mixed-{n}", [
            a.bin, "simulate", "--listen", f"127.0.0.1:{sim_port}", "--things", str(sim_n),
            "--seed", "1", "--rate-limit", a.budget, "--log.level", "warn"])
        wait_until("the simulator's /_sim/stats", lambda: sim_stats(sim_url) is not None,
                   a.ready_timeout, [sim])
        controls = []
        for iccid, state in fleet:
            if iccid in refused:
                controls.append((f"/_sim/things/{iccid}/refuse", None))
                continue
            wanted = "SUSPENDED" if iccid in suspended else "ACTIVE"
            if state != wanted:
                controls.append((f"/_sim/things/{iccid}/status", {"status": wanted}))
        sim_post_many(sim_url, controls)
        log(f"[N={n}] mixed: {r['fleet']} ({len(controls)} control calls)")

        base = sim_stats(sim_url)["status"]
        exp, url = self.start_exporter(f"mixed-{n}", sim_url, a.budget_interval, [
            "--poll.inactive-interval", a.budget_inactive_interval,
            "--monogoto.iccids-file", iccids_file],
            log_level="warn,monogoto_exporter::poller=debug", budget=a.budget)
        procs = [sim, exp]
        # Warm-up: the first refresh asks every SIM, bisects the batches the API
        # refuses down to the refused SIMs, and sorts the rest into tiers.
        first = wait_until(f"[N={n}] mixed: the first refresh",
                           lambda: refresh_intervals(exp.log_path),
                           a.ready_timeout + 30 * n / (BATCH * rate), procs, interval=0.05)[0]
        r["first_refresh"] = {"wall_s": round(first[1] - first[0], 3),
                              "status_requests": sim_stats(sim_url)["status"] - base}
        log(f"[N={n}] mixed: first refresh {r['first_refresh']}")
        # Its burst may have used up the budget's windows: steady passes
        # start once the longest window has gone by.
        window = longest_window(a.budget)
        settling, settled, _ = self.follow_refreshes(exp, url, sim_url, procs, 1, window, 1)
        r["settling_passes_s"] = [round(e - s_, 3) for s_, e, _ in settling]
        log(f"[N={n}] mixed: {len(settling)} refreshes in the budget's longest window "
            f"({window:.0f} s) after it: {r['settling_passes_s']}")
        health = scrape_health(url)
        wait0 = health.get("monogoto_api_budget_wait_seconds_total") or 0.0
        target0 = health.get("monogoto_refresh_target_seconds")
        http_delete(sim_url + "/_sim/polls")
        refusals0 = json.loads(http_get(sim_url + "/_sim/polls", timeout=30)[2])["budget_refusals"]
        period = max(parse_seconds(a.budget_inactive_interval), a.refreshes * (target0 or 0))
        log(f"[N={n}] mixed: target {target0} s; measuring steady refreshes for {period:.0f} s")
        started = time.monotonic()
        steady, ends, targets = self.follow_refreshes(
            exp, url, sim_url, procs, 1 + len(settling), period, a.refreshes)
        elapsed = time.monotonic() - started
        _, _, body = http_get(sim_url + "/_sim/polls", timeout=30)
        polls = json.loads(body)
        health = scrape_health(url)
        plans = plan_lines(exp.log_path)
        passes = [e - s_ for s_, e, _ in steady]
        requests = [b - a_ for a_, b in zip([settled[-1]] + ends, ends)]
        target = targets[-1]
        if len(set([target0] + targets)) > 1:
            warn(f"N={n}: the refresh target moved during the run: {[target0] + targets}")
        plan = plans[-1] if plans else {}
        if not plans:
            warn(f"no 'polling plan' line in {exp.log_path}: the log format changed?")
        r["mixed"] = {
            "target_s": target,
            "targets_seen_s": sorted(set(t for t in [target0] + targets if t is not None)),
            "plan": plan,
            "plans_logged": len(plans),
            "steady_passes_s": [round(p, 3) for p in passes],
            "median_pass_s": median(passes),
            "mean_pass_s": sum(passes) / len(passes),
            "max_pass_s": max(passes),
            "median_over_target": median(passes) / target if target else None,
            "mean_over_target": sum(passes) / len(passes) / target if target else None,
            "max_over_target": max(passes) / target if target else None,
            "status_requests_per_refresh": requests,
            "status_requests_per_refresh_mean": sum(requests) / len(requests),
            "measured_s": round(elapsed, 1),
            "up": health.get("monogoto_up"),
            "inactive": health.get("monogoto_things_inactive"),
            "things_reported": health.get("monogoto_things_reported"),
            "budget_wait_per_s": round(((health.get("monogoto_api_budget_wait_seconds_total")
                                         or 0.0) - wait0) / elapsed, 3),
            "refusals_429": polls["budget_refusals"] - refusals0,
            "refusals_429_warm_up": refusals0,
            "active_worst_age_s": polls["worst_gap_seconds_of_selection"],
            "peak_rss_kib": exp.memory_kib()[1],
        }
        log(f"[N={n}] mixed: {r['mixed']}")
        self.stop(exp)
        self.stop(sim)
        return r

    def follow_refreshes(self, exp, url, sim_url, procs, seen, period, at_least):
        """Watches the refreshes that end after the first `seen` ones of exp's
        log, for `period` seconds and at least `at_least` refreshes.

        Returns their (start, end, things), the simulator's status counter as
        each one ended (a refresh is noticed within about 20 ms of its end) and
        the exporter's refresh target after each."""
        started = time.monotonic()
        deadline = started + period + self.args.ready_timeout
        refreshes, ends, targets = [], [], []
        with open(exp.log_path, encoding="utf-8", errors="replace") as log_file:
            pending = ""
            while True:
                for p in procs:
                    p.check_alive()
                # Only the lines written since the last look, whole ones.
                pending += log_file.read()
                lines = pending.split("\n")
                pending = lines.pop()
                fresh = [r for r in map(refresh_of, lines) if r]
                skipped = min(seen, len(fresh))
                seen -= skipped
                fresh = fresh[skipped:]
                if fresh:
                    status = sim_stats(sim_url)["status"]
                    refreshes.extend(fresh)
                    ends.extend([status] * len(fresh))
                    targets.append(scrape_health(url).get("monogoto_refresh_target_seconds"))
                    if len(refreshes) >= at_least and time.monotonic() - started >= period:
                        return refreshes, ends, targets
                if time.monotonic() > deadline:
                    raise BenchError(f"{exp.name}: {len(refreshes)} refreshes ended in "
                                     f"{period + self.args.ready_timeout:.0f}s\n{exp.log_tail()}")
                time.sleep(0.02)

    def measure_cpu(self, n, sim, sim_url, interval):
        """CPU of steady refreshes, from quiet gap to quiet gap, never scraping."""
        a = self.args
        exp, url = self.start_exporter(
            f"cycle-{n}", sim_url, f"{interval}s", ["--monogoto.discover"]
        )
        self.wait_ready(exp, url, sim)
        procs = [sim, exp]
        timeout = a.ready_timeout + interval

        def quiet_point(previous_status):
            """Waits until the status counter and the exporter's CPU stop moving.

            Returns (status counter, exporter CPU, exporter schedstat CPU,
            simulator CPU, time)."""
            settle = 0.3
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for p in procs:
                    p.check_alive()
                s1, c1 = sim_stats(sim_url)["status"], exp.cpu_seconds()
                time.sleep(settle)
                s2, c2 = sim_stats(sim_url)["status"], exp.cpu_seconds()
                if s1 == s2 and s2 != previous_status and c2 - c1 <= 1.0 / CLK_TCK:
                    return s2, c2, exp.sched_seconds(), sim.cpu_seconds(), time.monotonic()
            raise BenchError(f"N={n}: no quiet point between refreshes within {timeout:.0f}s")

        # The first refresh (with discovery) is over; its end is the first quiet point.
        status, cpu, sched, sim_cpu, at = quiet_point(None)
        things_before = sim_stats(sim_url)["things"]
        # Idle drift: exporter CPU over a quiet second, subtracted per measured second.
        idle_cpu0, idle_t0 = exp.cpu_seconds(), time.monotonic()
        time.sleep(1.0)
        if sim_stats(sim_url)["status"] != status:
            warn(f"N={n}: a refresh started during the idle baseline; interval {interval}s too short?")
        idle_rate = (exp.cpu_seconds() - idle_cpu0) / (time.monotonic() - idle_t0)
        status, cpu, sched, sim_cpu, at = quiet_point(None)

        cpu_each, sched_each, sim_cpu_each, requests_each = [], [], [], []
        for _ in range(a.refreshes):
            # Wait for the next refresh to start, then for its end.
            wait_until(
                f"refresh of N={n} to start",
                lambda s=status: sim_stats(sim_url)["status"] > s,
                timeout, procs, interval=0.02,
            )
            status2, cpu2, sched2, sim_cpu2, at2 = quiet_point(status)
            cpu_each.append(max(0.0, cpu2 - cpu - idle_rate * (at2 - at)))
            # Threads started or ended in between (a blocking pool): no valid difference.
            sched_each.append(sched2[0] - sched[0] if sched2[1] == sched[1] else None)
            sim_cpu_each.append(sim_cpu2 - sim_cpu)
            requests_each.append(status2 - status)
            status, cpu, sched, sim_cpu, at = status2, cpu2, sched2, sim_cpu2, at2
        discovery_during = sim_stats(sim_url)["things"] - things_before
        # Scrape only now: the wall time of the last steady refresh.
        health = scrape_health(url)
        rss, hwm = exp.memory_kib()
        self.stop(exp)
        if any(req != math.ceil(n / BATCH) for req in requests_each):
            warn(f"N={n}: steady refreshes sent {requests_each} status requests, "
                 f"expected {math.ceil(n / BATCH)} each")
        return {
            "interval_s": interval,
            "cpu_s": [round(c, 3) for c in cpu_each],
            "cpu_per_refresh_s": sum(cpu_each) / len(cpu_each),
            "schedstat_cpu_per_refresh_s": mean_or_none(sched_each),
            "schedstat_cpu_s": [None if c is None else round(c, 4) for c in sched_each],
            "simulator_cpu_s": [round(c, 3) for c in sim_cpu_each],
            "idle_cpu_per_s": round(idle_rate, 4),
            "status_requests": requests_each,
            "discovery_requests_during": discovery_during,
            "wall_s": health.get("monogoto_refresh_duration_seconds"),
            "memory": {"VmRSS": rss, "VmHWM": hwm},
        }

    def measure_busy(self, n, sim, sim_url, idle_identity_bytes):
        """/metrics latency while a refresh is always running."""
        a = self.args
        iccids = list_fleet(sim_url, n)
        path = os.path.join(self.logdir, f"iccids-{n}.txt")
        with open(path, "w") as f:
            f.write("\n".join(iccids) + "\n")
        exp, url = self.start_exporter(
            f"busy-{n}", sim_url, "1s",
            ["--monogoto.iccids-file", path, "--poll.stale-after", "1h"],
            log_level="warn,monogoto_exporter::poller=debug",
        )
        procs = [sim, exp]
        self.wait_ready(exp, url, sim)
        # A refresh cut at its deadline publishes what it read, and the next one
        # continues: measure once the snapshot holds the whole fleet.
        reported = []

        def whole_fleet():
            reported.append(scrape_health(url).get("monogoto_things_reported"))
            return reported[-1] == n

        try:
            wait_until(f"the busy exporter of N={n} to report every Thing", whole_fleet,
                       a.ready_timeout, procs, interval=0.5)
        except BenchError as e:
            raise BenchError(f"{e}\n(things reported, last polls: {reported[-5:]})") from None
        identity, _ = body_sizes(url)
        out = {"body_identity_bytes": identity}
        if abs(identity - idle_identity_bytes) > 0.05 * idle_identity_bytes:
            warn(f"N={n}: busy body {identity} B differs from idle body {idle_identity_bytes} B")
        for name, gzip in (("identity", False), ("gzip", True)):
            out[name] = scrape_load(url + "/metrics", a.clients, a.duration, gzip, procs,
                                    sim_url, math.ceil(n / BATCH), exp.log_path)
            if out[name].get("refreshing_share", 0) < 0.8:
                warn(f"N={n}: a refresh overlapped only "
                     f"{out[name].get('refreshing_share', 0):.0%} of the busy {name} run; "
                     "its figures mix idle and busy scrapes")
        rss, hwm = exp.memory_kib()
        out["memory"] = {"VmRSS": rss, "VmHWM": hwm}
        self.stop(exp)
        return out

    # ---------------------------------------------------------------------
    # Warm restarts (--restart)

    def quiet_exporter(self, exp, sim_url, procs, timeout, settle=0.3):
        """Waits until the simulator's status counter and the exporter's CPU
        stay still for `settle` seconds (no refresh, no write running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in procs:
                p.check_alive()
            s1, c1 = sim_stats(sim_url)["status"], exp.cpu_seconds()
            time.sleep(settle)
            s2, c2 = sim_stats(sim_url)["status"], exp.cpu_seconds()
            if s1 == s2 and c2 - c1 <= 1.0 / CLK_TCK:
                return
        raise BenchError(f"{exp.name}: not quiet within {timeout:.0f}s")

    def timed_start(self, name, sim, sim_url, interval, extra, n, log_level="info"):
        """Starts an exporter and times, from the spawn, /readyz answering 200
        and /metrics serving all n SIMs (a scrape started at once, and again
        until it does). Polls /readyz every 5 ms."""
        a = self.args
        t0 = time.monotonic()
        exp, url = self.start_exporter(name, sim_url, interval, extra, log_level)
        procs = [sim, exp]

        def ready():
            return http_get(url + "/readyz", timeout=5)[0] == 200

        wait_until(f"{name} /readyz", ready, a.ready_timeout, procs, interval=0.005)
        ready_s = time.monotonic() - t0
        cpu_ready = exp.cpu_seconds()  # since the process started
        served_at_ready = served_iccids(url)
        scraped_s = time.monotonic() - t0
        all_served_s = scraped_s if len(served_at_ready) >= n else None
        while all_served_s is None:
            for p in procs:
                p.check_alive()
            if time.monotonic() - t0 > a.ready_timeout:
                raise BenchError(f"{name}: {len(served_at_ready)} of {n} SIMs served after "
                                 f"{a.ready_timeout}s")
            time.sleep(0.05)
            if scrape_health(url).get("monogoto_things_reported") == n:
                all_served_s = time.monotonic() - t0
        return exp, url, {
            "ready_s": round(ready_s, 4),
            "served_at_ready": len(served_at_ready),
            "missing_at_ready": n - len(served_at_ready),
            "first_scrape_done_s": round(scraped_s, 4),
            "all_served_s": round(all_served_s, 4),
            "cpu_to_ready_s": round(cpu_ready, 3),
            "rss_at_ready_kib": exp.memory_kib()[0],
        }

    def foreign_share(self, since):
        """Share of the CPUs other processes used since `since` (machine_cpu(),
        own_cpu()), every child having been waited for."""
        (busy0, total0), own0 = since
        busy1, total1 = machine_cpu()
        foreign = (busy1 - busy0) - (own_cpu() - own0)
        share_ = round(max(0.0, foreign) / max(1e-9, total1 - total0), 3)
        if share_ > NOISY:
            warn(f"other processes used {share_:.0%} of the CPUs meanwhile: the figures are skewed")
        return share_

    def run_restart(self, n):
        """Warm restarts at fleet size n, no budget: the state file's size,
        the cost of a write, scrapes during writes, the start from a saved
        state, and peak RSS, each against the same without --storage.path."""
        a = self.args
        since = machine_cpu(), own_cpu()
        r = {"things": n, "interval": a.restart_interval, "run_s": a.restart_run,
             "writes": a.writes}
        sim_port = free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        log(f"[N={n}] simulator on {sim_url}")
        sim = self.start(f"sim-{n}", [
            a.bin, "simulate", "--listen", f"127.0.0.1:{sim_port}", "--things", str(n),
            "--seed", "1", "--log.level", "warn"])
        wait_until("the simulator's /_sim/stats", lambda: sim_stats(sim_url) is not None,
                   a.ready_timeout, [sim])
        storage = tempfile.mkdtemp(prefix=f"storage-{n}-", dir=self.logdir)
        state = os.path.join(storage, "state")
        run = ["--monogoto.discover"]

        # ---- 1 and 2: refreshing every --restart-interval for --restart-run
        # seconds, without and with --storage.path: peak RSS, SIGTERM to exit.
        for mode, extra in (("without", []), ("with", ["--storage.path", storage])):
            watch = DirWatch(storage) if extra else None
            exp, url, start = self.timed_start(f"{mode}-storage-{n}", sim, sim_url,
                                               a.restart_interval, run + extra, n)
            procs = [sim, exp]
            log(f"[N={n}] {mode} storage: cold start {start}")
            t_end = time.monotonic() - start["all_served_s"] + a.restart_run
            while time.monotonic() < t_end:
                for p in procs:
                    p.check_alive()
                time.sleep(0.5)
            self.quiet_exporter(exp, sim_url, procs, a.ready_timeout)
            health = scrape_health(url)
            rss, hwm = exp.memory_kib()
            exit_s, code = timed_stop(exp, signal.SIGTERM)
            self.stop(exp)
            out = {"start": start, "rss_kib": rss, "peak_rss_kib": hwm,
                   "sigterm_exit_s": exit_s, "exit_code": code,
                   "refresh_s": health.get("monogoto_refresh_duration_seconds")}
            if watch:
                watch.stop()
                writes = watch.writes()
                out["writes"] = len(writes)
                out["state_bytes_metric"] = health.get("monogoto_storage_bytes")
                out["write_failures"] = health.get("monogoto_storage_write_failures_total")
                out["state_bytes_file"] = os.stat(state).st_size
            log(f"[N={n}] {mode} storage, refreshing: {out}")
            r[f"refreshing_{mode}"] = out

        # ---- 3: quiet (--poll.interval 3600s), from the state just saved:
        # the start, then writes measured from outside, alone then under scrapes.
        watch = DirWatch(storage)
        status_before = sim_stats(sim_url)["status"]
        exp, url, start = self.timed_start(f"quiet-{n}", sim, sim_url, "3600s",
                                           run + ["--storage.path", storage], n,
                                           log_level="info,monogoto_exporter::poller=debug")
        procs = [sim, exp]
        r["starts"] = [dict(start, took_back=took_back_line(exp.log_path))]
        log(f"[N={n}] warm start: {r['starts'][-1]}")
        loaded = scrape_health(url).get("monogoto_storage_loaded_things")
        r["loaded_things_metric"] = loaded
        self.quiet_exporter(exp, sim_url, procs, a.ready_timeout)
        # Where the peak falls: after the start and its first refresh, after
        # the quiet writes, after the scrapes.
        r["quiet_hwm_kib"] = {"first_refresh": exp.memory_kib()[1]}
        # What the start asked of the API before it fell quiet.
        refreshes = refresh_intervals(exp.log_path)
        r["first_refresh_after_start"] = {
            "things": refreshes[0][2] if refreshes else None,
            "seconds": round(refreshes[0][1] - refreshes[0][0], 3) if refreshes else None,
            "status_requests": sim_stats(sim_url)["status"] - status_before}
        sampler = CpuSampler(exp)
        seen = len(watch.writes())
        timeout = a.ready_timeout + 70 * a.writes
        wait_until(f"{a.writes} state writes", lambda: len(watch.writes()) >= seen + a.writes,
                   timeout, procs, interval=0.2)
        time.sleep(0.6)
        sampler.stop()
        quiet = watch.writes()[seen:seen + a.writes]
        bursts = [sampler.write_burst(*w) for w in quiet]
        if any(b is None for b in bursts):
            warn(f"N={n}: {sum(b is None for b in bursts)} writes without a quiet stretch before "
                 "them: their cost is not measured")
        bursts = [b for b in bursts if b]
        windows = [(w[2] - b["wall_s"], w[2] + 0.5) for w, b in zip(quiet, bursts)]
        r["quiet_writes"] = bursts
        r["idle_cpu_per_s"] = sampler.idle_cpu_per_s(windows)
        r["quiet_hwm_kib"]["quiet_writes"] = exp.memory_kib()[1]
        r["state_bytes_file"] = os.stat(state).st_size
        r["state_bytes_metric"] = scrape_health(url).get("monogoto_storage_bytes")
        log(f"[N={n}] quiet writes: {bursts}; idle CPU {r['idle_cpu_per_s']} s/s")
        # Scrapes across the next writes; a scrape overlaps a write when it
        # overlaps [rename - the longest quiet write's wall, rename].
        longest = max((b["wall_s"] for b in bursts), default=0.5)
        seen = len(watch.writes())

        def enough():
            return len(watch.writes()) >= seen + a.writes and \
                time.monotonic() - watch.writes()[-1][2] > 1.0

        scrapes = scrape_loop(url, time.monotonic() + 70 * a.writes + 30, enough)
        scraped = watch.writes()[seen:]
        r["scraped_writes"] = len(scraped)
        r["scrape_window"] = round(longest, 3)
        for name in ("identity", "gzip"):
            during, outside = [], []
            for enc, t0, t1, status, _ in scrapes:
                if enc != name or status != 200:
                    continue
                overlaps = any(t0 <= w[2] + 0.05 and t1 >= w[2] - longest - 0.05 for w in scraped)
                (during if overlaps else outside).append((t1 - t0) * 1000)
            r[f"scrapes_{name}"] = {"during_writes": latency_summary(during),
                                    "outside_writes": latency_summary(outside)}
        r["scrape_errors"] = sum(1 for s in scrapes if s[3] != 200)
        log(f"[N={n}] scrapes: identity {r['scrapes_identity']}, gzip {r['scrapes_gzip']}")
        self.quiet_exporter(exp, sim_url, procs, a.ready_timeout)
        rss, hwm = exp.memory_kib()
        r["quiet_peak_rss_kib"] = hwm
        r["quiet_hwm_kib"]["scrapes"] = hwm
        before = len(watch.writes())
        exit_s, code = timed_stop(exp, signal.SIGTERM)
        self.stop(exp)
        time.sleep(0.2)
        final = watch.writes()[before:]
        r["quiet_sigterm_exit_s"], r["quiet_exit_code"] = exit_s, code
        r["final_write"] = {"happened": bool(final),
                            "file_write_sync_s": round(final[0][2] - final[0][0], 4) if final else None}
        watch.stop()

        # ---- 4: more starts from the saved state, each stopped once quiet.
        for i in range(1, a.restarts):
            exp, url, start = self.timed_start(f"restart-{i}-{n}", sim, sim_url, "3600s",
                                               run + ["--storage.path", storage], n)
            start["took_back"] = took_back_line(exp.log_path)
            self.quiet_exporter(exp, sim_url, [sim, exp], a.ready_timeout)
            start["sigterm_exit_s"], start["exit_code"] = timed_stop(exp, signal.SIGTERM)
            self.stop(exp)
            r["starts"].append(start)
            log(f"[N={n}] warm start {i + 1}: {start}")
        self.stop(sim)
        r["foreign_cpu_share"] = self.foreign_share(since)
        return r

    def run_restart_budget(self, n):
        """A restart under the budget: SIGTERM, SIGKILL and a crash loop, each
        without and with --storage.path."""
        a = self.args
        fleet = [iccid for iccid, _ in self.twin_fleet(n)]
        iccids_file = os.path.join(self.logdir, f"iccids-restart-{n}.txt")
        with open(iccids_file, "w") as f:
            f.write("\n".join(fleet) + "\n")
        rate = sustained_rate(a.budget)
        r = {"things": n, "budget": a.budget, "interval": a.budget_interval,
             "downtime_s": a.downtime, "crash_loop": a.crash_loop,
             "limit_s": n / (BATCH * rate), "cases": []}
        since = machine_cpu(), own_cpu()
        for storage in (False, True):
            for kind in ("SIGTERM", "SIGKILL", "crash loop"):
                case = self.restart_case(n, fleet, iccids_file, storage, kind)
                log(f"[N={n}] {'with' if storage else 'without'} storage, {kind}: {case}")
                r["cases"].append(case)
        r["foreign_cpu_share"] = self.foreign_share(since)
        return r

    def restart_case(self, n, fleet, iccids_file, storage, kind):
        a = self.args
        label = ("with" if storage else "without") + "-" + kind.replace(" ", "-").lower()
        sim_port = free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        sim = self.start(f"sim-{label}-{n}", [
            a.bin, "simulate", "--listen", f"127.0.0.1:{sim_port}", "--things", str(n),
            "--seed", "1", "--rate-limit", a.budget, "--log.level", "warn"])
        wait_until("the simulator's /_sim/stats", lambda: sim_stats(sim_url) is not None,
                   a.ready_timeout, [sim])
        extra = ["--poll.inactive-interval", "0", "--monogoto.iccids-file", iccids_file]
        state = None
        if storage:
            folder = tempfile.mkdtemp(prefix=f"storage-{label}-{n}-", dir=self.logdir)
            extra += ["--storage.path", folder]
            state = os.path.join(folder, "state")
        count = [0]

        def spawn():
            count[0] += 1
            return self.start_exporter(f"{label}-{count[0]}-{n}", sim_url, a.budget_interval,
                                       extra, log_level="info,monogoto_exporter::poller=debug",
                                       budget=a.budget)

        out = {"storage": storage, "kind": kind}
        # Warm-up: a first pass, then (the poll log reset) a whole pass and
        # part of the next, so that every SIM has an answer on record.
        exp, url = spawn()
        procs = [sim, exp]
        timeout = a.ready_timeout + 3 * n / (BATCH * sustained_rate(a.budget))
        wait_until(f"{exp.name}: the first pass",
                   lambda: scrape_health(url).get("monogoto_things_reported") == n,
                   timeout, procs, interval=0.1)
        http_delete(sim_url + "/_sim/polls")
        ended = len(refresh_intervals(exp.log_path))
        wait_until(f"{exp.name}: a whole pass",
                   lambda: len(refresh_intervals(exp.log_path)) >= ended + 2,
                   timeout, procs, interval=0.05)
        passes = [e - s_ for s_, e, _ in refresh_intervals(exp.log_path)[ended + 1:]]
        out["pass_s"] = round(passes[-1], 3)
        status0 = sim_stats(sim_url)["status"]
        batches = math.ceil(n / BATCH)
        wait_until(f"{exp.name}: half a pass",
                   lambda: sim_stats(sim_url)["status"] >= status0 + batches // 2,
                   timeout, procs, interval=0.02)
        polls = sim_polls(sim_url)
        refusals_warm_up = polls["budget_refusals"]
        out["refusals_429_warm_up"] = refusals_warm_up
        if state:
            out["state_age_at_stop_s"] = round(time.time() - os.stat(state).st_mtime, 2)
        status_stop = sim_stats(sim_url)["status"]
        stopped_at = time.monotonic()
        if kind == "SIGTERM":
            out["exit_s"], out["exit_code"] = timed_stop(exp, signal.SIGTERM)
            self.stop(exp)
            time.sleep(a.downtime)
        else:
            timed_stop(exp, signal.SIGKILL)
            self.stop(exp)
            if kind == "SIGKILL":
                time.sleep(a.downtime)
        if kind == "crash loop":
            rng = random.Random(n)
            loop = []
            for _ in range(a.crash_loop):
                t0 = time.monotonic()
                exp, url = spawn()
                life = rng.uniform(0.3, 0.9)
                ready_s = None
                while time.monotonic() - t0 < life:
                    try:
                        if ready_s is None and http_get(url + "/readyz", timeout=1)[0] == 200:
                            ready_s = round(time.monotonic() - t0, 3)
                    except OSError:
                        pass
                    time.sleep(0.01)
                s_ = sim_stats(sim_url)["status"]
                timed_stop(exp, signal.SIGKILL)
                self.stop(exp)
                loop.append({"life_s": round(life, 3), "ready_s": ready_s,
                             "status_requests_so_far": s_ - status_stop})
            out["loop"] = loop
            out["loop_s"] = round(time.monotonic() - stopped_at, 3)
            out["loop_status_requests"] = sim_stats(sim_url)["status"] - status_stop
            out["loop_refusals_429"] = sim_polls(sim_url)["budget_refusals"] - refusals_warm_up
            out["loop_ready"] = sum(1 for x in loop if x["ready_s"] is not None)
        out["down_s"] = round(time.monotonic() - stopped_at, 3)
        # The restart: readiness, what /metrics holds then, then two refreshes.
        t0 = time.monotonic()
        exp, url = spawn()
        procs = [sim, exp]
        wait_until(f"{exp.name} /readyz", lambda: http_get(url + "/readyz", timeout=5)[0] == 200,
                   timeout, procs, interval=0.005)
        out["ready_s"] = round(time.monotonic() - t0, 4)
        served = served_iccids(url)
        out["missing_at_ready"] = len(set(fleet) - served)
        wait_until(f"{exp.name}: the first refresh after the restart",
                   lambda: len(refresh_intervals(exp.log_path)) >= 1,
                   timeout, procs, interval=0.05)
        first = refresh_intervals(exp.log_path)[0]
        out["first_refresh_s"] = round(first[1] - first[0], 3)
        out["first_refresh_things"] = first[2]
        out["refusals_429_first_refresh"] = sim_polls(sim_url)["budget_refusals"] - refusals_warm_up
        wait_until(f"{exp.name}: the second refresh after the restart",
                   lambda: len(refresh_intervals(exp.log_path)) >= 2,
                   timeout, procs, interval=0.05)
        polls = sim_polls(sim_url)
        health = scrape_health(url)
        out["refusals_429_after"] = polls["budget_refusals"] - refusals_warm_up
        out["exporter_429"] = health.get("api_429", 0.0)
        out["exporter_rate_limited"] = health.get("monogoto_api_rate_limited_total")
        out["measured"] = polls["measured"]
        out["longest_wait_s"] = polls["worst_gap_seconds"]
        out["median_wait_s"] = polls["median_gap_seconds"]
        out["took_back"] = took_back_line(exp.log_path)
        out["since_restart_s"] = round(time.monotonic() - t0, 3)
        self.stop(exp)
        self.stop(sim)
        return out


def mean_or_none(values):
    """Mean of the values that are not None; None when there is none."""
    valid = [v for v in values if v is not None]
    return sum(valid) / len(valid) if valid else None


def http_delete(url):
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def parse_seconds(text):
    """A duration such as 60s, 1m, 1h or 500ms, in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)", text.strip())
    if not m:
        raise BenchError(f"{text!r}: expected a duration such as 60s, 1m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def longest_window(budget):
    """The longest window of a budget such as 60/s,1000/min, in seconds."""
    return max(parse_seconds(p if p[:1].isdigit() else "1" + p)
               for p in (w.strip().partition("/")[2].strip() for w in budget.split(",")))


def sustained_rate(budget):
    """Requests per second a budget such as 60/s,1000/min sustains: its tightest window."""
    rates = []
    for window in budget.split(","):
        count, _, period = window.strip().partition("/")
        period = period.strip()
        seconds = parse_seconds(period if period[:1].isdigit() else "1" + period)
        rates.append(int(count) / seconds)
    return min(rates)


def budget_table(results):
    rows = ["| N | limit | refresh target | steady refresh | worst age | median age | worst / limit "
            "| ACTIVE worst / its limit | 429s | budget wait /s | peak RSS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        a, t = r["all"], r["tiered"]
        active = t["active_worst_age_s"]
        rows.append(
            f"| {r['things']:,} | {r['limit_s']:.1f} s | {a['target_s']:.1f} s | "
            f"{fmt_opt(a['refresh_s'], 1)} s | {a['worst_age_s']:.1f} s | {a['median_age_s']:.1f} s | "
            f"{a['worst_age_s'] / r['limit_s']:.2f}x | "
            + (f"{active:.1f} s / {t['active_limit_s']:.1f} s = {active / t['active_limit_s']:.2f}x "
               f"({int(r['things'] - t['inactive']):,} ACTIVE)" if active else "n/a")
            + f" | {a['refusals_429'] + t['refusals_429']} | {a['budget_wait_per_s']} | "
            f"{max(a['peak_rss_kib'], t['peak_rss_kib']) * 1024 / MB:.1f} MB |")
    return "\n".join(rows)


def list_fleet(sim_url, n, states=False):
    """Every ICCID of the simulated account, from its /things listing; with
    states, (ICCID, State) pairs."""
    iccids, offset = [], 0
    while True:
        status, _, body = http_get(
            f"{sim_url}/things?limit={THINGS_PAGE}&offset={offset}",
            {"Authorization": "Bearer " + TOKEN}, timeout=30,
        )
        if status != 200:
            raise BenchError(f"simulator /things answered {status}")
        page = json.loads(body)
        if isinstance(page, dict):  # tolerate an envelope
            page = page.get("Data") or page.get("data") or []
        for thing in page:
            thing_id = thing.get("ThingId", "")
            iccid = thing_id.removeprefix("ThingId_ICCID_") if thing_id else ""
            iccid = iccid or thing["ExternalUniqueId"]
            iccids.append((iccid, thing.get("State")) if states else iccid)
        if len(page) < THINGS_PAGE:
            break
        offset += len(page)
    if len(set(iccids)) != n:
        raise BenchError(f"the simulator listed {len(set(iccids))} Things, expected {n}")
    return iccids


def sim_post_many(sim_url, posts):
    """POSTs each (path, JSON body or None) to the simulator on one keep-alive
    connection; every answer must be 204."""
    parts = urllib.parse.urlsplit(sim_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        for path, body in posts:
            data = b"" if body is None else json.dumps(body).encode()
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            text = response.read()
            if response.status != 204:
                raise BenchError(f"simulator POST {path} answered {response.status}: "
                                 f"{text[:200]!r} (a binary without that control route?)")
    finally:
        conn.close()


def unknown_iccids(count):
    """Valid-looking 19-digit ICCIDs (Luhn check digit) the simulator never has:
    its own all start with 8988."""
    rng = random.Random(2)
    out = set()
    while len(out) < count:
        body = "8944" + "".join(str(rng.randrange(10)) for _ in range(14))
        out.add(body + luhn_digit(body))
    return sorted(out)


def luhn_digit(digits):
    """The Luhn check digit that completes `digits`."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


def spread(items, extra):
    """items with extra spread evenly among them."""
    if not extra:
        return list(items)
    out, step = [], len(items) / len(extra)
    at = [math.floor((j + 0.5) * step) for j in range(len(extra))]
    k = 0
    for i, item in enumerate(items):
        while k < len(extra) and at[k] == i:
            out.append(extra[k])
            k += 1
        out.append(item)
    return out + extra[k:]


def report(args, info, table, method, results):
    """Prints a scenario's table and method after its heading; writes --json."""
    print()
    print(table)
    print()
    print(method)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "argv": sys.argv, "method": method,
                       "results": results}, f, indent=2)
            f.write("\n")


PLAN_LINE = re.compile(r"^(\S+)\s+INFO\s+monogoto_exporter::poller: polling plan\b.*")
PLAN_FIELD = re.compile(r'\b(active|inactive|requests_per_refresh|budget|refresh_target|interval)='
                        r'("[^"]*"|\S+)')


def plan_lines(log_path):
    """The fields of every "polling plan" line of an exporter log, in order."""
    out = []
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = PLAN_LINE.match(line)
            if m:
                fields = {k: v.strip('"') for k, v in PLAN_FIELD.findall(line)}
                fields["logged_at"] = m.group(1)
                out.append(fields)
    return out


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def mixed_table(results):
    rows = ["| N | ACTIVE / SUSPENDED / refused / unknown | budget | refresh target | steady passes "
            "| pass median / mean / max | median / mean / max over target "
            "| status req/refresh seen: mean (max) | plan's requests_per_refresh "
            "| first pass | ACTIVE worst age | 429s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        m, f = r["mixed"], r["fleet"]
        first = r["first_refresh"]
        rows.append(
            f"| {r['things']:,} | {f['active']:,} / {f['suspended']:,} / {f['refused']:,} / "
            f"{f['unknown']:,} | {r['budget']} | {fmt_opt(m['target_s'], 2)} s "
            f"| {len(m['steady_passes_s'])} in {m['measured_s']:.0f} s "
            f"| {m['median_pass_s']:.2f} / {m['mean_pass_s']:.2f} / {m['max_pass_s']:.2f} s "
            f"| {fmt_opt(m['median_over_target'], 2)}x / {fmt_opt(m['mean_over_target'], 2)}x / "
            f"{fmt_opt(m['max_over_target'], 2)}x "
            f"| {m['status_requests_per_refresh_mean']:.1f} ({max(m['status_requests_per_refresh'])}) "
            f"| {m['plan'].get('requests_per_refresh', 'n/a')} "
            f"| {first['wall_s']:.1f} s, {first['status_requests']} req "
            f"| {fmt_opt(m['active_worst_age_s'], 1)} s | {m['refusals_429']} |")
    return "\n".join(rows)


MIXED_METHOD = """\
Method: the exporter follows N SIMs from an --monogoto.iccids-file: {unknown:.0%} unknown to the
simulator (spread through the file), the others the simulator's, of which {refused:.0%} of N
refused (400 "Invalid Input Data" to any status request naming one) and {suspended:.0%} of N
SUSPENDED, the rest ACTIVE. Simulator and exporter keep to the budget {budget};
--poll.interval {interval}, --poll.inactive-interval {inactive}. The warm-up is the first
refresh and the refreshes ending within the budget's longest window after it (which the
first refresh's burst may have used up). A steady pass is each later refresh ending within
one inactive interval (at least {refreshes}); its duration is the exporter's "refresh finished ... seconds=" debug
line, the target monogoto_refresh_target_seconds. Status requests per refresh: the
simulator's counter (429s included) read within about 20 ms of each refresh's end (a few
requests may count with the neighbouring refresh; the mean is over the whole window),
against the requests_per_refresh of the last "polling plan" line. ACTIVE worst age: the longest gap between two answers of
any ACTIVE SIM over the measured passes (the simulator's /_sim/polls)."""


def restart_table(results):
    rows = ["| N | figure | goal | without --storage.path | with --storage.path |",
            "| --- | --- | --- | --- | --- |"]
    for r in results:
        n = f"{r['things']:,}"
        wo, wi = r["refreshing_without"], r["refreshing_with"]
        q = r["quiet_writes"]
        starts = r["starts"]
        walls = [b["wall_s"] * 1000 for b in q]
        cpus = [b["cpu_stat_s"] * 1000 for b in q]
        sched = [b["cpu_schedstat_s"] * 1000 for b in q if b["cpu_schedstat_s"] is not None]
        parts = (f"encode {median([b['encode_s'] for b in q]) * 1000:.0f}, file write + fsync "
                 f"{median([b['file_write_sync_s'] for b in q]) * 1000:.0f}, rename + folder fsync "
                 f"{median([b['rename_dir_sync_s'] for b in q]) * 1000:.0f} ms (medians)") if q else "n/a"
        lat = {k: r[f"scrapes_{k}"] for k in ("identity", "gzip")}

        def lat_cell(s):
            if not s["count"]:
                return "none"
            return (f"{fmt_ms(s['p50_ms'])} / {fmt_ms(s['p99_ms'])} / {fmt_ms(s['max_ms'])} ms "
                    f"({s['count']})")

        rows += [
            f"| {n} | state file (`monogoto_storage_bytes`; `ls -l state`) | ≤ 20 MB | | "
            f"{fmt_mb(r['state_bytes_metric'] or 0)} MB; {r['state_bytes_file']:,} bytes |",
            f"| {n} | one write, wall: CPU burst start to rename (min / median / max of "
            f"{len(q)}) | ≤ 300 ms | | "
            + (f"{min(walls):.0f} / {median(walls):.0f} / {max(walls):.0f} ms; {parts}" if q else "n/a")
            + " |",
            f"| {n} | one write, CPU: utime+stime (schedstat) | ≤ 300 ms | | "
            + (f"{median(cpus):.0f} ms median, {max(cpus):.0f} max"
               + (f" ({median(sched):.0f} / {max(sched):.0f})" if sched else "") if q else "n/a")
            + " |",
            f"| {n} | SIGTERM to exit (sent once quiet) | | {wo['sigterm_exit_s'] * 1000:.0f} ms "
            f"| {wi['sigterm_exit_s'] * 1000:.0f} ms (the refreshing one); "
            f"{r['quiet_sigterm_exit_s'] * 1000:.0f} ms (the one started from the state; final write "
            f"{'seen' if r['final_write']['happened'] else 'NOT seen'}); "
            + ", ".join(f"{s['sigterm_exit_s'] * 1000:.0f}" for s in starts[1:]) + " ms after the other starts |",
            f"| {n} | /metrics gzip p50 / p99 / max (scrapes) during writes | no worse than outside | | "
            f"{lat_cell(lat['gzip']['during_writes'])}; outside: {lat_cell(lat['gzip']['outside_writes'])} |",
            f"| {n} | /metrics identity, the same | no worse than outside | | "
            f"{lat_cell(lat['identity']['during_writes'])}; outside: "
            f"{lat_cell(lat['identity']['outside_writes'])} |",
            f"| {n} | start to /readyz 200 | | {wo['start']['ready_s']:.2f} s (cold) | "
            + ", ".join(f"{s['ready_s']:.3f}" for s in starts) + " s |",
            f"| {n} | start to every SIM served | ≤ 1.5 s | {wo['start']['all_served_s']:.2f} s (cold) | "
            + ", ".join(f"{s['all_served_s']:.3f}" for s in starts) + " s (scrape done; "
            + ", ".join(f"{s['missing_at_ready']}" for s in starts) + " missing at /readyz 200) |",
            f"| {n} | peak RSS, refreshing every {r['interval']} for {r['run_s']} s "
            f"| ≤ 200 MB | {wo['peak_rss_kib'] * 1024 / MB:.1f} MB | {wi['peak_rss_kib'] * 1024 / MB:.1f} MB "
            f"({wi['writes']} writes); started from the state: "
            + " / ".join(f"{r['quiet_hwm_kib'][k] * 1024 / MB:.1f}"
                         for k in ("first_refresh", "quiet_writes", "scrapes"))
            + " MB after its first refresh / quiet writes / scrapes |",
        ]
    return "\n".join(rows)


def restart_budget_table(results):
    rows = ["| N | restart | storage | state age at the stop | down | ready after start "
            "| SIMs missing at /readyz 200 | 429s: first refresh after / two refreshes after "
            "| longest wait / pass + down | first refresh after |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for c in r["cases"]:
            kind = c["kind"]
            if kind == "crash loop":
                kind = (f"crash loop ({len(c['loop'])} SIGKILLs, {c['loop_status_requests']} "
                        f"requests, {c['loop_refusals_429']} 429s, {c['loop_ready']} ready)")
            budget = c["pass_s"] + c["down_s"]
            age = c.get("state_age_at_stop_s")
            age = "n/a" if age is None else f"{age:.1f} s" + (
                " (then a final write)" if c["kind"] == "SIGTERM" else "")
            rows.append(
                f"| {r['things']:,} | {kind} | {'yes' if c['storage'] else 'no'} "
                f"| {age} | {c['down_s']:.1f} s "
                f"| {c['ready_s']:.2f} s | {c['missing_at_ready']} "
                f"| {c['refusals_429_first_refresh']} / {c['refusals_429_after']} "
                f"| {c['longest_wait_s']:.1f} s / {budget:.1f} s "
                f"| {c['first_refresh_s']:.1f} s, {c['first_refresh_things']} SIMs |")
    return "\n".join(rows)


RESTART_METHOD = """\
Method: simulator (`simulate --things N --seed 1`) and exporter on 127.0.0.1, exporter flags
--monogoto.discover --monogoto.rate-limit 0 --poll.concurrency 4 --poll.timeout 30s. Two
exporters refresh every {interval} for {run} s, one without and one with --storage.path (peak RSS:
VmHWM just before the stop; SIGTERM sent once the simulator's status counter and the
exporter's CPU were still for 0.3 s, its exit waited for). Then an exporter with
--poll.interval 3600s starts from the state the second saved (the start: spawn to /readyz 200,
polled every 5 ms, then one identity scrape, whose end is "every SIM served" when it holds all
N monogoto_thing_info series; else /metrics is polled until monogoto_things_reported is N).
Once quiet, its next {writes} once-a-minute writes are timed from outside: inotify on the
folder (the temporary file created, closed, renamed over `state`) and the exporter's threads'
CPU (schedstat, ns) and utime+stime, sampled every 2 ms; a write starts at the last still
sample before the CPU moves ({quiet} s still before it, before the temporary file appears)
and ends at the rename or the last CPU movement within 0.5 s after it. Nothing else runs in
that exporter then (its CPU outside the writes is given). Then one client scrapes /metrics
back to back, identity and gzip alternately, across {writes} more writes; a scrape is "during
a write" when it overlaps [rename - the longest quiet write, rename]. Then SIGTERM (exit timed,
its final write seen by inotify), and {restarts_more} more starts from the state, each
stopped by SIGTERM once quiet."""

RESTART_BUDGET_METHOD = """\
Method: the simulator enforces {budget} (429 over it) and the exporter keeps to it, with
--poll.interval {interval}, --poll.inactive-interval 0 (every SIM every pass) and the fleet
from an --monogoto.iccids-file; each case on a fresh simulator. Warm-up: the first pass, then
the simulator's poll log is reset and the exporter runs a whole pass and half of the next
(status requests counted); then it is stopped (SIGTERM, or SIGKILL), and started again after
{downtime} s down; "crash loop": {crash_loop} exporters in a row, each SIGKILLed 0.3 to 0.9 s after
its spawn, then one left running. The restarted exporter's /readyz is polled every 5 ms; at
its first 200, one scrape of /metrics gives the SIMs missing. 429s: the simulator's refusals
since the stop (so the crash loop's are counted too), at the end of the first and of the
second refresh after the restart (the exporter's "refresh finished" debug lines). Longest
wait: the simulator's longest gap between two answers of any SIM, over the warm-up's whole
pass, the stop, and the two refreshes after the restart; against the last warm-up pass plus
the time down (stop to spawn). State age: how old `state` was when the exporter was
stopped: the answers a crash loses."""


# --------------------------------------------------------------------------
# Output


def fmt_pair(w):
    return f"{fmt_ms(w['p50_ms'])} / {fmt_ms(w['p99_ms'])}"


def fmt_ms(v):
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def fmt_opt(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def cpu_for_per_thing(cycle):
    """schedstat's figure (ns resolution) when every sample held, else utime+stime."""
    if None in cycle["schedstat_cpu_s"] or cycle["schedstat_cpu_per_refresh_s"] is None:
        return cycle["cpu_per_refresh_s"]
    return cycle["schedstat_cpu_per_refresh_s"]


def share(w):
    """How much of a wrk run overlapped a refresh, as a percentage."""
    value = w.get("refreshing_share")
    return "n/a" if value is None else f"{value:.0%}"


def fmt_mb(b):
    v = b / MB
    return f"{v:.3f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def tables(results):
    head = ("| N | status req/refresh | discovery req | refresh wall (s) first / steady "
            "| CPU/refresh (s), stat / schedstat | /metrics p50 / p99 identity idle (ms) "
            "| p50 / p99 gzip idle (ms) | p99 identity busy (ms), busy/idle "
            "| p99 gzip busy (ms), busy/idle | body identity (MB) | body gzip (MB) "
            "| peak RSS (MB) |")
    lines = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
    for r in results:
        idle, busy = r["idle"], r["busy"]
        ratio_i = busy["identity"]["p99_ms"] / idle["identity"]["p99_ms"]
        ratio_g = busy["gzip"]["p99_ms"] / idle["gzip"]["p99_ms"]
        steady = r["cycle"]["status_requests"]
        status = str(r["first_refresh"]["status_requests"])
        if any(s != r["first_refresh"]["status_requests"] for s in steady):
            status += " (steady: " + ", ".join(map(str, steady)) + ")"
        lines.append(
            f"| {r['things']:,} | {status} | {r['first_refresh']['discovery_requests']} "
            f"| {r['first_refresh']['wall_s']:.2f} / {r['cycle']['wall_s']:.2f} "
            f"| {r['cycle']['cpu_per_refresh_s']:.3f} / {fmt_opt(r['cycle']['schedstat_cpu_per_refresh_s'])} "
            f"| {fmt_pair(idle['identity'])} | {fmt_pair(idle['gzip'])} "
            f"| {fmt_ms(busy['identity']['p99_ms'])}, {ratio_i:.1f}x "
            f"| {fmt_ms(busy['gzip']['p99_ms'])}, {ratio_g:.1f}x "
            f"| {fmt_mb(r['body_identity_bytes'])} | {fmt_mb(r['body_gzip_bytes'])} "
            f"| {r['peak_rss_kib'] * 1024 / MB:.1f} |"
        )
    per = ["", "Per Thing:", "",
           "| N | CPU per refresh per 1k Things (ms) | refresh wall per 1k Things (ms) "
           "| peak RSS per Thing (bytes) | RSS per added Thing vs smallest N (bytes) "
           "| identity body per Thing (bytes) | gzip body per Thing (bytes) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    smallest = results[0]
    for r in results:
        n, k = r["things"], r["things"] / 1000
        rss = r["peak_rss_kib"] * 1024
        if r is smallest:
            marginal = "n/a"
        else:
            marginal = f"{(rss - smallest['peak_rss_kib'] * 1024) / (n - smallest['things']):.0f}"
        per.append(
            f"| {n:,} | {cpu_for_per_thing(r['cycle']) * 1000 / k:.1f} "
            f"| {r['cycle']['wall_s'] * 1000 / k:.1f} | {rss / n:.0f} | {marginal} "
            f"| {r['body_identity_bytes'] / n:.0f} | {r['body_gzip_bytes'] / n:.0f} |"
        )
    busy = ["", "Busy runs (the exporter refreshing every second while wrk scrapes):", "",
            "| N | encoding | wrk run with a refresh in flight | with status requests flowing "
            "| refreshes' wall during the run (s) | status requests/s | p50 / p99 (ms) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for name in ("identity", "gzip"):
            w = r["busy"][name]
            walls = w.get("refresh_walls_during_s") or []
            wall = f"{min(walls):.2f} to {max(walls):.2f}" if walls else "n/a"
            ratio = w.get("status_flowing_share")
            busy.append(
                f"| {r['things']:,} | {name} | {share(w)} "
                f"| {'n/a' if ratio is None else f'{ratio:.0%}'} | {wall} "
                f"| {w.get('status_requests_per_s', 'n/a')} | {fmt_pair(w)} |"
            )
    return "\n".join(lines + per + busy)


METHOD = """\
Method: simulator and exporter are separate processes on 127.0.0.1; exporter flags
--monogoto.rate-limit 0 --poll.concurrency 4 --poll.timeout 30s. "status req/refresh" and
"discovery req" are the simulator's request counters over the first refresh of a
--monogoto.discover exporter (expected ceil(N/50) and floor(N/50)+1: discovery pages
until an empty page).
"refresh wall": monogoto_refresh_duration_seconds of the first refresh (discovery
included) / of a steady refresh (cached list). "CPU/refresh": utime+stime of the exporter
(/proc/PID/stat) across each of {refreshes} steady refreshes of an exporter nobody
scrapes, from the quiet gap before to the quiet gap after (refreshes told apart by the
simulator's status counter), minus its idle CPU rate; mean (10 ms clock ticks; the
schedstat figure sums the threads' ns run time over the same span, and is left out for a
refresh during which a thread started or ended; the per-Thing table uses it when all
samples held, else utime+stime). Latency: wrk -t2 -c{clients}
-d{duration}s --latency on /metrics, plain and with Accept-Encoding: gzip; "idle" against an
exporter whose only refresh is over (--poll.interval 3600s), "busy" against one that is
refreshing every second (--poll.interval 1s, a refresh longer than that is cut at its
deadline and continued by the next at once; --poll.stale-after 1h; ICCIDs from a file).
"a refresh in flight": share of the wrk run covered by refreshes, from the exporter's
own "refresh finished" debug lines (end time and duration); busy figures at a low share
are mostly idle ones. "status requests flowing": share of 50 ms slots in which the
simulator's status counter moved (low when scrapes starve the refresh). Body sizes: raw bytes, not
decompressed. MB = 10^6 bytes. Peak RSS: the largest VmHWM of the three exporters,
read just before each was stopped."""


def machine_info(binary):
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["mem_total_kib"] = int(line.split()[1])
    except OSError:
        pass
    for key, argv in (("exporter_version", [binary, "--version"]),
                      ("rustc", ["rustc", "--version"]),
                      ("wrk", ["wrk", "--version"])):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            info[key] = (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            info[key] = None
    return info


# --------------------------------------------------------------------------


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def fleet_sizes(text):
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,N,... got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected positive fleet sizes, got {text!r}")
    return sizes


def main():
    parser = argparse.ArgumentParser(
        description="End-to-end benchmark of monogoto-exporter against its simulator.",
        epilog=METHOD.format(refreshes="N", clients="C", duration="D"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--things", type=fleet_sizes, required=True,
                        help="fleet sizes, comma separated, e.g. 1000,10000,100000")
    parser.add_argument("--bin", default=DEFAULT_BIN,
                        help=f"exporter binary (default {DEFAULT_BIN}, built with "
                             "cargo build --release --locked when missing)")
    parser.add_argument("--clients", type=positive_int, default=4,
                        help="concurrent wrk connections (default 4)")
    parser.add_argument("--duration", type=positive_int, default=10,
                        help="seconds of each wrk run (default 10)")
    parser.add_argument("--refreshes", type=positive_int, default=3,
                        help="steady refreshes whose CPU is averaged (default 3)")
    parser.add_argument("--ready-timeout", type=positive_int, default=600,
                        help="seconds to wait for a process or a refresh (default 600)")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures here")
    parser.add_argument("--wait-quiet", type=non_negative_int, default=0, metavar="SECONDS",
                        help="before each fleet size, wait up to this long for 5 idle seconds "
                             "(under 10%% of the CPUs busy); default: do not wait")
    parser.add_argument("--retries", type=non_negative_int, default=0,
                        help="measure a fleet size again, up to this many times, when other "
                             f"processes used over {NOISY * 100:.0f}%% of the CPUs meanwhile; the "
                             "quietest attempt is reported (default 0)")
    parser.add_argument("--budget", metavar="SPEC",
                        help="the budget scenario: the simulator enforces this budget (scaled to "
                             "seconds, e.g. 60/s,1000/min) and the exporter keeps to it")
    parser.add_argument("--budget-interval", default="1s",
                        help="--poll.interval of the budget scenario (default 1s)")
    parser.add_argument("--budget-inactive-interval", default="60s",
                        help="--poll.inactive-interval of its tiered and mixed runs (default 60s)")
    parser.add_argument("--mixed", action="store_true",
                        help="with --budget, the mixed-fleet scenario instead of the all and "
                             "tiered runs: 70%% ACTIVE, 20%% SUSPENDED, 5%% refused by the API, "
                             "5%% unknown to it; steady pass against the refresh target")
    parser.add_argument("--restart", action="store_true",
                        help="the warm-restart scenario (--storage.path): state size, write cost, "
                             "scrapes during writes, start from a saved state, peak RSS; with "
                             "--budget SPEC, restarts (SIGTERM, SIGKILL, a crash loop) under the "
                             "budget, without and with --storage.path")
    parser.add_argument("--restart-interval", default="10s",
                        help="--poll.interval of the refreshing runs of --restart (default 10s)")
    parser.add_argument("--restart-run", type=positive_int, default=190, metavar="SECONDS",
                        help="how long the refreshing runs of --restart last (default 190: "
                             "three once-a-minute writes)")
    parser.add_argument("--writes", type=positive_int, default=3,
                        help="state writes timed with nothing else running, and again under "
                             "scrapes (default 3; one a minute)")
    parser.add_argument("--restarts", type=positive_int, default=3,
                        help="starts from the saved state timed (default 3)")
    parser.add_argument("--downtime", type=float, default=2.0, metavar="SECONDS",
                        help="with --restart --budget: seconds between the stop and the start "
                             "(default 2)")
    parser.add_argument("--crash-loop", type=positive_int, default=12, metavar="K",
                        help="with --restart --budget: exporters SIGKILLed within a second of "
                             "their start, in a row (default 12)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the temporary directory with the processes' logs")
    args = parser.parse_args()

    if args.mixed and not args.budget:
        parser.error("--mixed needs --budget SPEC")
    if args.mixed and args.restart:
        parser.error("--mixed and --restart are separate scenarios")
    if shutil.which("wrk") is None and not args.budget and not args.restart:
        raise BenchError("wrk is needed: apt-get install wrk")
    if not os.path.isabs(args.bin):
        args.bin = os.path.abspath(os.path.join(REPO, args.bin) if args.bin == DEFAULT_BIN
                                   else args.bin)
    if not os.path.exists(args.bin):
        if args.bin != os.path.join(REPO, DEFAULT_BIN):
            raise BenchError(f"no exporter binary at {args.bin}")
        log(f"{args.bin} is missing: cargo build --release --locked")
        if subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPO,
                          check=False).returncode != 0:
            raise BenchError("cargo build --release --locked failed")
    if not os.access(args.bin, os.X_OK):
        raise BenchError(f"{args.bin} is not executable")

    logdir = tempfile.mkdtemp(prefix="fleet-bench-")
    bench = Bench(args, logdir)
    ok = False

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        info = machine_info(args.bin)
        log(f"machine: {info}")
        if args.restart:
            results = []
            for n in args.things:
                best = None
                for attempt in range(1 + args.retries):
                    if args.wait_quiet:
                        wait_quiet(args.wait_quiet)
                    result = bench.run_restart_budget(n) if args.budget else bench.run_restart(n)
                    bench.stop_all()
                    result["attempt"] = attempt + 1
                    if best is None or result["foreign_cpu_share"] < best["foreign_cpu_share"]:
                        best = result
                    if result["foreign_cpu_share"] <= NOISY:
                        break
                    if attempt < args.retries:
                        log(f"[N={n}] other processes used {result['foreign_cpu_share']:.0%} "
                            "of the CPUs: measuring again")
                results.append(best)
            if args.budget:
                method = RESTART_BUDGET_METHOD.format(
                    budget=args.budget, interval=args.budget_interval, downtime=args.downtime,
                    crash_loop=args.crash_loop)
                table = restart_budget_table(results)
                print(f"restarts under the budget {args.budget}, interval {args.budget_interval}; "
                      f"monogoto-exporter {info.get('exporter_version')}; {info.get('nproc')} x "
                      f"{info.get('cpu')}; CPU used by other processes during the runs: "
                      + ", ".join(f"{r['foreign_cpu_share']:.0%} (N={r['things']:,})" for r in results))
            else:
                method = RESTART_METHOD.format(
                    interval=args.restart_interval, run=args.restart_run, writes=args.writes,
                    quiet=QUIET_BEFORE_WRITE, restarts_more=args.restarts - 1)
                table = restart_table(results)
                print(f"warm restarts; monogoto-exporter {info.get('exporter_version')}; "
                      f"{info.get('nproc')} x {info.get('cpu')}, "
                      f"{info.get('mem_total_kib', 0) / 2**20:.0f} GiB, Linux {info.get('kernel')}; "
                      "CPU used by other processes during the runs: "
                      + ", ".join(f"{r['foreign_cpu_share']:.0%} (N={r['things']:,})" for r in results))
            method = textwrap.fill(" ".join(method.split()), 92)
            report(args, info, table, method, results)
            ok = True
            return
        if args.mixed:
            results = []
            for n in args.things:
                results.append(bench.run_mixed(n))
                bench.stop_all()
            method = textwrap.fill(" ".join(MIXED_METHOD.format(
                unknown=MIXED_UNKNOWN, refused=MIXED_REFUSED, suspended=MIXED_SUSPENDED,
                budget=args.budget, interval=args.budget_interval,
                inactive=args.budget_inactive_interval, refreshes=args.refreshes).split()), 92)
            print(f"mixed fleet, budget {args.budget}, interval {args.budget_interval}, inactive "
                  f"interval {args.budget_inactive_interval}; monogoto-exporter "
                  f"{info.get('exporter_version')}; {info.get('nproc')} x {info.get('cpu')}")
            report(args, info, mixed_table(results), method, results)
            ok = True
            return
        if args.budget:
            results = []
            for n in args.things:
                results.append(bench.run_budget(n))
                bench.stop_all()
            print(f"budget {args.budget}, interval {args.budget_interval}, inactive interval "
                  f"{args.budget_inactive_interval}, {args.refreshes} refreshes measured; "
                  f"{info.get('nproc')} x {info.get('cpu')}")
            print()
            print(budget_table(results))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"machine": info, "argv": sys.argv, "results": results}, f, indent=2)
                    f.write("\n")
            ok = True
            return
        results = []
        for n in args.things:
            best = None
            for attempt in range(1 + args.retries):
                if args.wait_quiet:
                    wait_quiet(args.wait_quiet)
                result = bench.run_one(n)
                bench.stop_all()
                result["attempt"] = attempt + 1
                if best is None or result["foreign_cpu_share"] < best["foreign_cpu_share"]:
                    best = result
                if result["foreign_cpu_share"] <= NOISY:
                    break
                if attempt < args.retries:
                    log(f"[N={n}] other processes used {result['foreign_cpu_share']:.0%} "
                        "of the CPUs: measuring again")
            results.append(best)
        method = textwrap.fill(" ".join(METHOD.format(
            refreshes=args.refreshes, clients=args.clients, duration=args.duration).split()), 92)
        print(f"monogoto-exporter {{{results[0].get('build_info')}}}; {info.get('nproc')} x "
              f"{info.get('cpu')}, {info.get('mem_total_kib', 0) / 2**20:.0f} GiB, "
              f"Linux {info.get('kernel')}; CPU used by other processes during the runs: "
              + ", ".join(f"{r['foreign_cpu_share']:.0%} (N={r['things']:,})" for r in results))
        report(args, info, tables(results), method, results)
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
        print(f"fleet-bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("fleet-bench: interrupted", file=sys.stderr)
        sys.exit(130)
