#!/usr/bin/env python3
"""Helpers of scripts/e2e.sh (standard library only).

Subcommands:
  fast-rules IN OUT DURATION [ALERT=DURATION...]
                               copy a rules file, every `for:` set to DURATION
  pick METRICS_URL OUT_JSON    choose the Things to disconnect from /metrics
  having METRICS_URL N METRIC...
                               up to N ICCIDs of /metrics with a sample of every METRIC
  notified FILE ...            0 if a webhook notification matches, else 1
  check-alert FILE ...         check labels and annotations of the matching alert
  never-notified FILE ...      fail if any notification of these alerts fired
  query URL PROMQL             0 if the Prometheus query returns data, else 1
  rules-healthy URL RULES      every rule of RULES loaded, healthy; records have data
"""

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request


def fail(msg: str) -> "None":
    print(f"e2e: {msg}", file=sys.stderr)
    sys.exit(1)


# --- fast-rules -------------------------------------------------------------

FOR_LINE = re.compile(r"^(\s+for:\s*)(\S+)(\s*(#.*)?)$")
ALERT_LINE = re.compile(r"^\s+- alert:\s*(\S+)")


def fast_rules(args: argparse.Namespace) -> int:
    """The rules under test are the shipped ones, only with short hold times."""
    overrides = dict(o.split("=", 1) for o in args.override)
    with open(args.src, encoding="utf-8") as f:
        lines = f.read().split("\n")
    alerts, changed, current = [], [], None
    for i, line in enumerate(lines):
        m = ALERT_LINE.match(line)
        if m:
            current = m.group(1)
            alerts.append(current)
            continue
        m = FOR_LINE.match(line)
        if m and current:
            lines[i] = f"{m.group(1)}{overrides.get(current, args.duration)}"
            changed.append(current)
            current = None
    if not alerts or changed != alerts:
        fail(f"fast-rules: {args.src}: alerts {alerts} but `for:` lines for {changed}; "
             "give every alert a `for:` so the test copy can shorten it")
    unknown = set(overrides) - set(alerts)
    if unknown:
        fail(f"fast-rules: no alert named {sorted(unknown)} in {args.src}")
    with open(args.dst, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"{len(changed)} hold times set to {args.duration}, overrides {overrides}")
    return 0


# --- pick ------------------------------------------------------------------

def parse_labels(text: str, i: int):
    """Parses `{a="x",b="y"}` of the text format from text[i] == '{'; returns (labels, end)."""
    labels = {}
    i += 1
    while True:
        while text[i] in " ,":
            i += 1
        if text[i] == "}":
            return labels, i + 1
        eq = text.index("=", i)
        name = text[i:eq].strip()
        i = eq + 1
        if text[i] != '"':
            raise ValueError(f"label {name}: expected a quote at {i}")
        i += 1
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                nxt = text[i + 1]
                value.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
                i += 2
            else:
                value.append(text[i])
                i += 1
        labels[name] = "".join(value)
        i += 1


def parse_metrics(body: str):
    """Yields (name, labels, value) of the samples of a text-format body."""
    for line in body.split("\n"):
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            labels, end = parse_labels(line, brace)
            rest = line[end:].split()
        else:
            name = line[:space]
            labels = {}
            rest = line[space:].split()
        yield name, labels, float(rest[0])


def pick(args: argparse.Namespace) -> int:
    with urllib.request.urlopen(args.metrics_url, timeout=10) as r:
        body = r.read().decode("utf-8")
    info, connected, last_conn = {}, {}, set()
    for name, labels, value in parse_metrics(body):
        iccid = labels.get("iccid")
        if name == "monogoto_thing_info":
            info[iccid] = labels
        elif name == "monogoto_thing_connected":
            connected[iccid] = value
        elif name == "monogoto_thing_last_connection_timestamp_seconds":
            last_conn.add(iccid)

    def plain(name: str) -> bool:
        return re.fullmatch(r"[A-Za-z0-9-]*", name) is not None

    active = sorted(
        (i for i, lab in info.items()
         if lab.get("provision_status") == "ACTIVE" and connected.get(i) == 1),
        # Prefer a name with quotes, backslashes, newlines or non-ASCII letters: the
        # name then proves its escaping from /metrics to the webhook.
        key=lambda i: (plain(info[i]["thing_name"]), i),
    )
    if not active:
        fail(f"pick: no ACTIVE connected Thing in {args.metrics_url}")
    # A TEST_ACTIVE Thing that would count as "was connected" (connected now, or
    # with a LastConnectionTime): disconnecting it must not alert.
    test_active = sorted(
        i for i, lab in info.items()
        if lab.get("provision_status") == "TEST_ACTIVE"
        and (connected.get(i) == 1 or i in last_conn)
    )
    chosen = {
        "active": info[active[0]],
        "test_active": info[test_active[0]] if test_active else None,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(chosen, f, ensure_ascii=False, indent=1)
    print(active[0], test_active[0] if test_active else "-")
    return 0


# --- having ----------------------------------------------------------------

def having(args: argparse.Namespace) -> int:
    """ICCIDs that have every one of the metrics, sorted, at most N, on one line."""
    with urllib.request.urlopen(args.metrics_url, timeout=10) as r:
        body = r.read().decode("utf-8")
    seen: dict[str, set] = {name: set() for name in args.metrics}
    for name, labels, _ in parse_metrics(body):
        if name in seen and "iccid" in labels:
            seen[name].add(labels["iccid"])
    found = sorted(set.intersection(*seen.values()) - set(args.exclude or []))
    print(*found[: args.n])
    return 0 if found else 1


# --- webhook notifications -------------------------------------------------

def notifications(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    except FileNotFoundError:
        return


def matching_alerts(path: str, alertname: str, status: str, labels: dict):
    for n in notifications(path):
        for a in n.get("alerts", []):
            al = a.get("labels", {})
            if (al.get("alertname") == alertname and a.get("status") == status
                    and all(al.get(k) == v for k, v in labels.items())):
                yield a


def label_args(pairs):
    out = {}
    for p in pairs or []:
        k, _, v = p.partition("=")
        out[k] = v
    return out


def notified(args: argparse.Namespace) -> int:
    for a in matching_alerts(args.file, args.alertname, args.status, label_args(args.label)):
        if not args.quiet:
            print(json.dumps(a, ensure_ascii=False, indent=1))
        return 0
    return 1


def check_alert(args: argparse.Namespace) -> int:
    with open(args.target, encoding="utf-8") as f:
        thing = json.load(f)["active"]
    expected = {
        "alertname": args.alertname,
        "iccid": thing["iccid"],
        "thing_name": thing["thing_name"],
        "provision_status": "ACTIVE",
        "severity": "warning",
        "job": "monogoto",
        "instance": args.instance,
    }
    found = list(matching_alerts(args.file, args.alertname, args.status,
                                 {"iccid": thing["iccid"]}))
    if not found:
        fail(f"check-alert: no {args.status} {args.alertname} for {thing['iccid']}")
    a = found[0]
    problems = []
    for k, v in expected.items():
        if a["labels"].get(k) != v:
            problems.append(f"label {k}={a['labels'].get(k)!r}, want {v!r}")
    ann = a.get("annotations", {})
    for key in ("summary", "description"):
        for want in (thing["iccid"], thing["thing_name"]):
            if want not in ann.get(key, ""):
                problems.append(f"annotation {key} does not name {want!r}: {ann.get(key)!r}")
    anchor = args.alertname.lower()
    url = ann.get("runbook_url", "")
    if not url.endswith(f"/docs/runbook.md#{anchor}"):
        problems.append(f"runbook_url {url!r} does not point to docs/runbook.md#{anchor}")
    with open(args.runbook, encoding="utf-8") as f:
        headings = [line for line in f if re.match(rf"^#+\s+{re.escape(args.alertname)}\s*$", line)]
    if not headings:
        problems.append(f"{args.runbook} has no heading `{args.alertname}` (anchor #{anchor})")
    if problems:
        print(json.dumps(a, ensure_ascii=False, indent=1), file=sys.stderr)
        fail("check-alert: " + "; ".join(problems))
    print(f"{args.status} {args.alertname} for {thing['iccid']} ({thing['thing_name']!r}): "
          "labels, annotations and runbook link as expected")
    return 0


def never_notified(args: argparse.Namespace) -> int:
    pattern = re.compile(args.alertnames)
    labels = label_args(args.label)
    bad = []
    for n in notifications(args.file):
        for a in n.get("alerts", []):
            al = a.get("labels", {})
            if (pattern.fullmatch(al.get("alertname", "")) and a.get("status") == "firing"
                    and all(al.get(k) == v for k, v in labels.items())):
                bad.append(a)
    if bad:
        print(json.dumps(bad, ensure_ascii=False, indent=1), file=sys.stderr)
        fail(f"never-notified: unexpected firing alerts matching {args.alertnames} {labels}")
    return 0


# --- Prometheus ------------------------------------------------------------

def api(url: str, path: str, params=None):
    q = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}{path}{q}", timeout=10) as r:
        doc = json.load(r)
    if doc.get("status") != "success":
        raise RuntimeError(f"{path}: {doc}")
    return doc["data"]


def query(args: argparse.Namespace) -> int:
    try:
        data = api(args.url, "/api/v1/query", {"query": args.promql})
    except (OSError, RuntimeError) as e:
        print(f"query: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(json.dumps(data["result"], ensure_ascii=False))
    return 0 if data["result"] else 1


def rules_healthy(args: argparse.Namespace) -> int:
    with open(args.rules, encoding="utf-8") as f:
        text = f.read()
    want_alerts = set(re.findall(r"^\s+- alert:\s*(\S+)", text, re.M))
    want_records = set(re.findall(r"^\s+- record:\s*(\S+)", text, re.M))
    groups = api(args.url, "/api/v1/rules")["groups"]
    seen, problems = set(), []
    for g in groups:
        for r in g["rules"]:
            seen.add(r["name"])
            if r.get("health") != "ok":
                problems.append(f"{r['name']}: health {r.get('health')!r}: {r.get('lastError')}")
    for missing in sorted((want_alerts | want_records) - seen):
        problems.append(f"{missing}: not loaded by Prometheus")
    for rec in sorted(want_records):
        if not api(args.url, "/api/v1/query", {"query": rec})["result"]:
            problems.append(f"{rec}: recording rule has no data")
    if problems:
        fail("rules-healthy:\n  " + "\n  ".join(problems))
    print(f"{len(want_alerts)} alerts and {len(want_records)} recording rules loaded, "
          "healthy, every recording rule has data")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("fast-rules")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("duration")
    s.add_argument("override", nargs="*", help="ALERTNAME=DURATION")
    s.set_defaults(fn=fast_rules)

    s = sub.add_parser("pick")
    s.add_argument("metrics_url")
    s.add_argument("out")
    s.set_defaults(fn=pick)

    s = sub.add_parser("having")
    s.add_argument("metrics_url")
    s.add_argument("n", type=int)
    s.add_argument("metrics", nargs="+")
    s.add_argument("--exclude", action="append", help="an ICCID to leave out")
    s.set_defaults(fn=having)

    s = sub.add_parser("notified")
    s.add_argument("file")
    s.add_argument("--alertname", required=True)
    s.add_argument("--status", required=True, choices=["firing", "resolved"])
    s.add_argument("--label", action="append", help="k=v")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=notified)

    s = sub.add_parser("check-alert")
    s.add_argument("file")
    s.add_argument("--alertname", required=True)
    s.add_argument("--status", required=True, choices=["firing", "resolved"])
    s.add_argument("--target", required=True, help="the JSON file `pick` wrote")
    s.add_argument("--instance", required=True)
    s.add_argument("--runbook", required=True)
    s.set_defaults(fn=check_alert)

    s = sub.add_parser("never-notified")
    s.add_argument("file")
    s.add_argument("--alertnames", required=True, help="regular expression")
    s.add_argument("--label", action="append", help="k=v")
    s.set_defaults(fn=never_notified)

    s = sub.add_parser("query")
    s.add_argument("url")
    s.add_argument("promql")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=query)

    s = sub.add_parser("rules-healthy")
    s.add_argument("url")
    s.add_argument("rules")
    s.set_defaults(fn=rules_healthy)

    args = p.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
