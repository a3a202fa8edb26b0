#!/usr/bin/env python3
"""Run every Prometheus query of Grafana dashboards against a live Prometheus.

    check_dashboards.py --prometheus http://127.0.0.1:9090 dashboards/

Reads each dashboard JSON (files, or every *.json of a directory), collects the
Prometheus expressions of every panel target (rows, collapsed rows included) and
of every query variable, substitutes the template variables, and runs them:

- a target marked `instant` as an instant query, any other as a range query over
  the last `--lookback` (both when it asks for both);
- `label_values(metric, label)` variables through /api/v1/label/<label>/values.

A query fails when Prometheus answers with an error or with an empty result.
Variables:

- `$datasource` (type datasource) is not substituted: it only picks the server.
- query variables (`$iccid`, `${iccid}`, `[[iccid]]`, `${iccid:raw}`, ...) take
  real values from Prometheus. When a variable has several values, the values
  are tried in turn (at most `--max-candidates`) and the dashboard passes with
  the first one for which every one of its queries returns data: a dashboard
  about one Thing must work for some Thing, not for all of them (a Thing that
  never connected legitimately has no last-connection time).
- `--var NAME=VALUE` pins a variable instead.
- `--allow-empty TITLE_REGEX` lets the panels whose title matches return no data
  (a sharded fleet's panel in an unsharded run): their queries must still run
  without error.
- Grafana's built-ins: `$__rate_interval` (`--rate-interval`, default 1m, which is
  4 x a 15 s scrape interval), `$__interval` (`--interval`, 15s), `$__range`
  (`--range`, 1h) and their `_ms` / `_s` forms.

With `--wait N` failing queries are retried for up to N seconds, for a run that
starts right after Prometheus does. Prints one line per query and a closing
'N passed, N failed' line; exits 0 when every query returned data, 1 when one
did not, 2 on bad usage or when Prometheus cannot be reached.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# $name, ${name}, ${name:format}, [[name]], [[name:format]]
VAR_RE = re.compile(
    r"\$\{(?P<b>[A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}"
    r"|\[\[(?P<k>[A-Za-z_][A-Za-z0-9_]*)(?::[^\]]*)?\]\]"
    r"|\$(?P<p>[A-Za-z_][A-Za-z0-9_]*)"
)
LABEL_VALUES_RE = re.compile(
    r"^\s*label_values\(\s*(?:(?P<metric>.+?)\s*,\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$",
    re.S,
)
QUERY_RESULT_RE = re.compile(r"^\s*query_result\((?P<expr>.+)\)\s*$", re.S)


class PromError(Exception):
    """Prometheus answered with an error, or could not be reached."""


class Unreachable(PromError):
    pass


def duration_seconds(text: str) -> float:
    m = DURATION_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (try 15s, 1m, 1h)")
    return int(m.group(1)) * UNIT_SECONDS[m.group(2)]


def duration_arg(text: str) -> str:
    duration_seconds(text)
    return text


def title_regex(text: str) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {e}") from None


class Prometheus:
    def __init__(self, base: str, timeout: float):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, params: list[tuple[str, str]]) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                doc = json.loads(body)
                raise PromError(f"{doc.get('errorType', 'error')}: {doc.get('error', body[:200])}") from None
            except ValueError:
                raise PromError(f"HTTP {e.code} from {url}") from None
        except (urllib.error.URLError, OSError) as e:
            raise Unreachable(f"cannot reach Prometheus at {self.base}: {e}") from None
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise PromError(f"{doc.get('errorType', 'error')}: {doc.get('error')}")
        return doc

    def instant(self, expr: str) -> tuple[int, list[str]]:
        doc = self.get("/api/v1/query", [("query", expr)])
        return count_result(doc["data"]), doc.get("warnings", []) + doc.get("infos", [])

    def range(self, expr: str, lookback: float, step: float) -> tuple[int, list[str]]:
        end = time.time()
        doc = self.get(
            "/api/v1/query_range",
            [("query", expr), ("start", f"{end - lookback:.3f}"), ("end", f"{end:.3f}"), ("step", f"{step:g}")],
        )
        return count_result(doc["data"]), doc.get("warnings", []) + doc.get("infos", [])

    def label_values(self, label: str, metric: str | None, lookback: float) -> list[str]:
        end = time.time()
        params = [("start", f"{end - lookback:.3f}"), ("end", f"{end:.3f}")]
        if metric:
            params.append(("match[]", metric))
        return list(self.get(f"/api/v1/label/{urllib.parse.quote(label)}/values", params)["data"])


def count_result(data: dict) -> int:
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        return 1
    if kind == "matrix":
        return sum(1 for s in result or [] if s.get("values") or s.get("histograms"))
    return len(result or [])


@dataclass
class Query:
    dashboard: str
    where: str  # panel or variable description
    ref: str
    expr: str  # raw, with variables
    mode: str  # instant | range | label_values | var_query
    label: str | None = None
    metric: str | None = None
    panel_title: str | None = None  # None for a variable's query


@dataclass
class Variable:
    name: str
    kind: str
    query: str | None = None
    values: list[str] = field(default_factory=list)


def iter_panels(panels: list) -> list:
    out = []
    for p in panels or []:
        out.append(p)
        out.extend(iter_panels(p.get("panels", [])))
    return out


def is_prometheus(ds, dash_vars: dict[str, Variable]) -> bool:
    """A target's datasource is Prometheus if it says so, or points at a datasource variable."""
    if ds is None:
        return True  # the panel's, checked by the caller
    if isinstance(ds, str):
        name = ds.strip("${}")
        return ds.startswith("$") and name in dash_vars and dash_vars[name].kind == "datasource"
    if ds.get("type") in (None, "prometheus"):
        return True
    return False


def load_dashboard(path: Path) -> tuple[str, list[Query], dict[str, Variable]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if "dashboard" in doc and "panels" not in doc:
        doc = doc["dashboard"]  # an API export wrapped in {"dashboard": ...}
    name = f"{path.name} ({doc.get('title', '?')})"
    variables: dict[str, Variable] = {}
    queries: list[Query] = []
    for v in (doc.get("templating") or {}).get("list") or []:
        var = Variable(name=v["name"], kind=v.get("type", "query"))
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query") or q.get("expr")
        var.query = q if isinstance(q, str) else None
        if var.kind in ("custom",) and var.query:
            var.values = [x.strip() for x in re.split(r"(?<!\\),", var.query) if x.strip()]
        elif var.kind in ("constant", "textbox") and var.query is not None:
            var.values = [var.query]
        elif var.kind == "interval" and var.query:
            var.values = [var.query.split(",")[0].strip()]
        variables[var.name] = var
        if var.kind == "query" and var.query:
            m = LABEL_VALUES_RE.match(var.query)
            qr = QUERY_RESULT_RE.match(var.query)
            where = f"variable ${var.name}"
            if m:
                queries.append(Query(name, where, "", var.query, "label_values", m.group("label"), m.group("metric")))
            elif qr:
                queries.append(Query(name, where, "", qr.group("expr"), "var_query"))
            else:
                queries.append(Query(name, where, "", var.query, "unsupported"))
    for p in iter_panels(doc.get("panels", [])):
        if p.get("type") == "row":
            continue
        panel_ds = p.get("datasource")
        title = f"panel {p.get('id', '?')} {p.get('title', '')!r}"
        for t in p.get("targets") or []:
            if t.get("hide"):
                continue
            ds = t.get("datasource", panel_ds)
            if not is_prometheus(ds, variables) or not is_prometheus(panel_ds, variables):
                continue
            expr = t.get("expr")
            panel_title = p.get("title", "")
            if not expr:
                queries.append(Query(name, title, t.get("refId", "?"), "", "empty", panel_title=panel_title))
                continue
            instant = bool(t.get("instant"))
            ranged = bool(t.get("range")) or not instant
            if instant:
                queries.append(Query(name, title, t.get("refId", "?"), expr, "instant", panel_title=panel_title))
            if ranged:
                queries.append(Query(name, title, t.get("refId", "?"), expr, "range", panel_title=panel_title))
    return name, queries, variables


def substitute(expr: str, values: dict[str, str], builtins: dict[str, str]) -> tuple[str, list[str]]:
    missing = []

    def repl(m: re.Match) -> str:
        name = m.group("b") or m.group("k") or m.group("p")
        if name in builtins:
            return builtins[name]
        if name in values:
            return values[name]
        missing.append(name)
        return m.group(0)

    return VAR_RE.sub(repl, expr), missing


def run_query(prom: Prometheus, q: Query, values: dict, builtins: dict, args) -> tuple[bool, str, str]:
    """Returns (ok, detail, substituted expression)."""
    if q.mode == "empty":
        return False, "target has no expression", ""
    if q.mode == "unsupported":
        return False, "variable query is neither label_values(...) nor query_result(...)", q.expr
    expr, missing = substitute(q.expr, values, builtins)
    if missing:
        return False, "unknown variable " + ", ".join(f"${n}" for n in sorted(set(missing))), expr
    try:
        if q.mode == "label_values":
            metric = None
            if q.metric:
                metric, missing = substitute(q.metric, values, builtins)
                if missing:
                    return False, "unknown variable " + ", ".join(f"${n}" for n in missing), expr
            n, notes = len(prom.label_values(q.label, metric, args.lookback)), []
        elif q.mode in ("instant", "var_query"):
            n, notes = prom.instant(expr)
        else:
            n, notes = prom.range(expr, args.lookback, args.step)
    except Unreachable:
        raise
    except PromError as e:
        return False, f"error: {e}", expr
    detail = f"{n} series" if q.mode != "label_values" else f"{n} values"
    if notes:
        detail += " (" + "; ".join(notes) + ")"
    if n == 0:
        if q.panel_title is not None and any(r.fullmatch(q.panel_title) for r in args.allow_empty):
            return True, "empty result, allowed (--allow-empty)", expr
        return False, "empty result", expr
    return True, detail, expr


def resolve_candidates(prom: Prometheus, queries: list[Query], variables: dict[str, Variable],
                       pinned: dict[str, str], builtins: dict, args) -> dict[str, list[str]]:
    """Candidate values of every non-datasource variable, in dependency order."""
    cands: dict[str, list[str]] = {}
    fixed: dict[str, str] = dict(pinned)
    for name, var in variables.items():
        if name in pinned:
            cands[name] = [pinned[name]]
            continue
        if var.kind == "datasource":
            continue
        if var.kind == "query" and var.query:
            firsts = {k: v[0] for k, v in cands.items() if v}
            firsts.update(fixed)
            m = LABEL_VALUES_RE.match(var.query)
            try:
                if m:
                    metric = substitute(m.group("metric"), firsts, builtins)[0] if m.group("metric") else None
                    vals = prom.label_values(m.group("label"), metric, args.lookback)
                else:
                    qr = QUERY_RESULT_RE.match(var.query)
                    vals = []
                    if qr:
                        expr = substitute(qr.group("expr"), firsts, builtins)[0]
                        doc = prom.get("/api/v1/query", [("query", expr)])
                        vals = [json.dumps(s.get("metric")) for s in doc["data"].get("result", [])]
            except Unreachable:
                raise
            except PromError:
                vals = []
            cands[name] = vals[: args.max_candidates]
        elif var.values:
            cands[name] = var.values[:1]
    return cands


def check_dashboard(prom: Prometheus, path: Path, pinned: dict, builtins: dict, args) -> tuple[list, list]:
    """Returns (results, notes) for the best variable assignment."""
    name, queries, variables = load_dashboard(path)
    cands = resolve_candidates(prom, queries, variables, pinned, builtins, args)
    names = [n for n in cands]
    lists = [cands[n] or [""] for n in names]  # an empty list still runs once, to report
    best: tuple[int, list] | None = None
    tried = 0
    for combo in itertools.islice(itertools.product(*lists), args.max_candidates):
        tried += 1
        values = {n: v for n, v in zip(names, combo) if v != ""}
        results = []
        for q in queries:
            ok, detail, expr = run_query(prom, q, values, builtins, args)
            results.append((q, ok, detail, expr, values))
        failures = sum(1 for r in results if not r[1])
        if best is None or failures < best[0]:
            best = (failures, results)
        if failures == 0:
            break
    notes = []
    if best is None:
        return [], [f"{name}: no queries"]
    chosen = best[1][0][4] if best[1] else {}
    if chosen:
        notes.append(f"{name}: variables " + ", ".join(f"${k}={v}" for k, v in chosen.items())
                     + (f" (tried {tried} assignment(s))" if tried > 1 else ""))
    for n, lst in cands.items():
        if not lst:
            notes.append(f"{name}: variable ${n} has no values")
    return best[1], notes


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="dashboard JSON files or directories of them")
    ap.add_argument("--prometheus", required=True, metavar="URL", help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--rate-interval", type=duration_arg, default="1m", metavar="DURATION", help="value of $__rate_interval (1m)")
    ap.add_argument("--interval", type=duration_arg, default="15s", metavar="DURATION", help="value of $__interval (15s)")
    ap.add_argument("--range", dest="range_", type=duration_arg, default="1h", metavar="DURATION", help="value of $__range (1h)")
    ap.add_argument("--lookback", type=duration_seconds, default=300.0, metavar="DURATION",
                    help="window of range queries and label look-ups (5m)")
    ap.add_argument("--step", type=duration_seconds, default=15.0, metavar="DURATION", help="step of range queries (15s)")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="pin a variable")
    ap.add_argument("--allow-empty", action="append", default=[], type=title_regex, metavar="TITLE_REGEX",
                    help="panels whose whole title matches may return no data (errors still fail); repeatable")
    ap.add_argument("--max-candidates", type=int, default=25, metavar="N",
                    help="variable values (assignments) tried per dashboard (25)")
    ap.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="retry while some query fails, for up to this long (0)")
    ap.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="HTTP timeout of one request in seconds (10)")
    ap.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    args = ap.parse_args(argv)

    pinned = {}
    for item in args.var:
        if "=" not in item:
            ap.error(f"--var {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        pinned[k] = v
    files: list[Path] = []
    for p in map(Path, args.paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.json")))
        elif p.is_file():
            files.append(p)
        else:
            ap.error(f"{p}: no such file or directory")
    if not files:
        ap.error("no dashboard JSON files found")

    def builtin_values() -> dict[str, str]:
        rng = duration_seconds(args.range_)
        ivl = duration_seconds(args.interval)
        return {
            "__rate_interval": args.rate_interval,
            "__rate_interval_ms": f"{int(duration_seconds(args.rate_interval) * 1000)}",
            "__interval": args.interval,
            "__interval_ms": f"{int(ivl * 1000)}",
            "__range": args.range_,
            "__range_s": f"{int(rng)}",
            "__range_ms": f"{int(rng * 1000)}",
        }

    prom = Prometheus(args.prometheus, args.timeout)
    deadline = time.monotonic() + args.wait
    try:
        prom.get("/api/v1/status/buildinfo", [])
    except PromError as e:
        print(f"check_dashboards: {e}", file=sys.stderr)
        return 2
    for path in files:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            print(f"check_dashboards: {path}: not a JSON dashboard: {e}", file=sys.stderr)
            return 2

    attempt = 0
    while True:
        attempt += 1
        all_results, all_notes = [], []
        try:
            for path in files:
                results, notes = check_dashboard(prom, path, pinned, builtin_values(), args)
                all_results.extend(results)
                all_notes.extend(notes)
        except Unreachable as e:
            print(f"check_dashboards: {e}", file=sys.stderr)
            return 2
        failed = [r for r in all_results if not r[1]]
        if not failed or time.monotonic() >= deadline:
            break
        print(f"check_dashboards: attempt {attempt}: {len(failed)} quer{'y' if len(failed) == 1 else 'ies'} "
              f"without data, retrying", file=sys.stderr)
        time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))

    for note in all_notes:
        print(f"# {note}")
    for q, ok, detail, expr, _ in all_results:
        if ok and args.quiet:
            continue
        ref = f" {q.ref}" if q.ref else ""
        line = f"{'ok  ' if ok else 'FAIL'} {q.dashboard} {q.where}{ref} [{q.mode}]: {detail}"
        print(line)
        if not ok:
            print("       " + (expr or q.expr).replace("\n", "\n       "))
    passed = len(all_results) - len(failed)
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
