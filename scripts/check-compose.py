#!/usr/bin/env python3
"""Cross-checks deploy/compose/compose.yaml against the files it uses.

What the Compose JSON Schema cannot see, and `docker compose config` would need
a Docker CLI plugin for: every bind-mounted path and secret file exists; the
committed secret files hold only the simulator's demo tokens; the hosts that
Prometheus scrapes and alerts to, and Grafana's datasource URL, are services of
the stack; Grafana's dashboard provider path is where dashboards/ is mounted;
the exporter's --monogoto.token-file is one of its secrets; the exporter keeps
its state (--storage.path, or MONOGOTO_EXPORTER_STORAGE_PATH) in a named volume
of its own; the exporter's webhook token (POST /webhook) comes from one of its
secrets (--webhook.token-file) or from MONOGOTO_WEBHOOK_TOKEN in Compose's
environment, never an empty string, with no default but the simulator's demo
token; a --webhook-url (the simulator's) is /webhook of a service of the
stack, and sends the exporter's token.

Needs PyYAML (scripts/check-deploy.sh runs it in its venv, where yamllint
brought it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "deploy/compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
DEMO_TOKEN = "sim-static-token"
# The compose file's default webhook token, shared by the simulator and the exporter.
DEMO_WEBHOOK_TOKEN = "sim-webhook-token"
WEBHOOK_ENV = "MONOGOTO_WEBHOOK_TOKEN"
INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")

errors: list[str] = []


def interpolate(text: str) -> str:
    """${VAR:-default} -> default, as with VAR unset."""
    return INTERP.sub(lambda m: m.group(2) or "", text)


def host_path(src: str) -> Path | None:
    src = interpolate(src)
    if src.startswith((".", "/", "~")):
        return (COMPOSE_DIR / src).resolve()
    return None  # a named volume


def main() -> int:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services: dict = doc.get("services", {})
    names = set(services)
    mounts: dict[str, dict[str, Path]] = {}  # service -> container path -> host path
    named: dict[str, dict[str, str]] = {}  # service -> container path -> named volume

    for name, svc in services.items():
        mounts[name] = {}
        named[name] = {}
        for vol in svc.get("volumes", []) or []:
            if isinstance(vol, dict):
                src, dst = vol.get("source", ""), vol.get("target", "")
            else:
                parts = vol.split(":")
                src, dst = parts[0], parts[1] if len(parts) > 1 else parts[0]
            path = host_path(src)
            if path is None:
                if src not in (doc.get("volumes") or {}):
                    errors.append(f"service {name}: volume {src!r} is neither a path nor a top-level volume")
                else:
                    named[name][dst.rstrip("/")] = src
                continue
            if not path.exists():
                errors.append(f"service {name}: bind mount source {src} ({path}) does not exist")
            mounts[name][dst] = path
        for secret in svc.get("secrets", []) or []:
            sname = secret if isinstance(secret, str) else secret.get("source")
            if sname not in (doc.get("secrets") or {}):
                errors.append(f"service {name}: secret {sname!r} is not defined")
        for dep in svc.get("depends_on", []) or []:
            if dep not in names:
                errors.append(f"service {name}: depends on unknown service {dep!r}")

    for sname, sec in (doc.get("secrets") or {}).items():
        path = host_path(sec.get("file", ""))
        if path is None or not path.is_file():
            errors.append(f"secret {sname}: file {sec.get('file')!r} does not exist")
    for f in sorted((COMPOSE_DIR / "secrets").glob("*")):
        if f.is_file() and f.read_text(encoding="utf-8").strip() not in (DEMO_TOKEN, DEMO_WEBHOOK_TOKEN):
            errors.append(f"{f.relative_to(ROOT)}: only the simulator's demo tokens may be committed")

    # The exporter reads its token from one of its secrets.
    exporter = services.get("monogoto-exporter", {})
    cmd = " ".join(exporter.get("command", []) or [])
    m = re.search(r"--monogoto\.token-file[= ](\S+)", cmd)
    secrets_of_exporter = {s if isinstance(s, str) else s.get("source") for s in exporter.get("secrets", []) or []}
    if not m or not m.group(1).startswith("/run/secrets/") or m.group(1).rsplit("/", 1)[1] not in secrets_of_exporter:
        errors.append("monogoto-exporter: --monogoto.token-file must name one of its secrets under /run/secrets/")
    m = re.search(r"--monogoto\.url[= ](\S+)", cmd)
    if not m or urlparse(interpolate(m.group(1))).hostname not in names:
        errors.append("monogoto-exporter: --monogoto.url default must point at a service of the stack")

    # The exporter's state: in a named volume (which outlives the container),
    # mounted at its --storage.path, and no other service's.
    m = re.search(r"--storage\.path[= ](\S+)", cmd)
    env = exporter.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env if "=" in e)
    storage = interpolate(m.group(1)) if m else interpolate(str(env.get("MONOGOTO_EXPORTER_STORAGE_PATH") or ""))
    if not storage:
        errors.append("monogoto-exporter: no --storage.path in its command (nor MONOGOTO_EXPORTER_STORAGE_PATH "
                      "in its environment): name the state directory, where its named volume is mounted")
    elif storage.rstrip("/") not in named.get("monogoto-exporter", {}):
        errors.append(f"monogoto-exporter: no named volume is mounted at --storage.path={storage}: "
                      "its state would be lost with the container")
    else:
        volume = named["monogoto-exporter"][storage.rstrip("/")]
        for other, vols in named.items():
            if other != "monogoto-exporter" and volume in vols.values():
                errors.append(f"monogoto-exporter: its state volume {volume} is mounted by {other} too")

    # Webhooks (POST /webhook): the token from one of the exporter's secrets,
    # or MONOGOTO_WEBHOOK_TOKEN from Compose's environment (passed on, or with
    # the demo token as its default). An empty one (${VAR:-}, or ${VAR} while
    # VAR is unset) makes the exporter refuse to start.
    raw_env = exporter.get("environment") or {}
    if isinstance(raw_env, list):
        raw_env = {e.split("=", 1)[0]: (e.split("=", 1)[1] if "=" in e else None) for e in raw_env}
    # The exporter's webhook token with every variable unset, and the variables
    # that set it (None: not compared, a secret file's).
    token, token_vars = None, set()
    m = re.search(r"--webhook\.token-file[= ](\S+)", cmd)
    if m:
        sname = m.group(1).rsplit("/", 1)[1]
        if not m.group(1).startswith("/run/secrets/") or sname not in secrets_of_exporter:
            errors.append("monogoto-exporter: --webhook.token-file must name one of its secrets under /run/secrets/")
        else:
            sec = (doc.get("secrets") or {}).get(sname) or {}
            path = host_path(sec.get("file", ""))
            token = path.read_text(encoding="utf-8").strip() if path and path.is_file() else None
            token_vars = None
    elif WEBHOOK_ENV in raw_env:
        value = raw_env[WEBHOOK_ENV]
        ref = INTERP.fullmatch(str(value)) if value is not None else None
        if value is None:
            token_vars = {WEBHOOK_ENV}  # passed on when set, left out (webhooks off) when not
        elif ref is None:
            errors.append(f"monogoto-exporter: {WEBHOOK_ENV} holds a token written in the compose file: take it "
                          f"from Compose's environment (${{{WEBHOOK_ENV}:-{DEMO_WEBHOOK_TOKEN}}})")
        elif not ref.group(2):
            errors.append(f"monogoto-exporter: {WEBHOOK_ENV}={value} is empty while {ref.group(1)} is unset, and "
                          f"the exporter refuses an empty token: give the demo token as its default")
        elif ref.group(2) != DEMO_WEBHOOK_TOKEN:
            errors.append(f"monogoto-exporter: {WEBHOOK_ENV}={value}: only the simulator's demo webhook token "
                          f"{DEMO_WEBHOOK_TOKEN} may be committed as its default")
        else:
            token, token_vars = ref.group(2), {ref.group(1)}
    else:
        errors.append(f"monogoto-exporter: no webhook token (--webhook.token-file naming one of its secrets, or "
                      f"{WEBHOOK_ENV} in its environment): POST /webhook cannot be turned on")
    # A sender's --webhook-url (the simulator's): /webhook of the exporter, with its token.
    for name, svc in services.items():
        scmd = " ".join(str(w) for w in svc.get("command", []) or [])
        m = re.search(r"--webhook-url[= ](\S+)", scmd)
        if not m:
            continue
        url = urlparse(interpolate(m.group(1)))
        if url.hostname not in names or url.path.rstrip("/") != "/webhook":
            errors.append(f"{name}: --webhook-url {m.group(1)} is not /webhook of a service of the stack")
            continue
        if url.hostname != "monogoto-exporter":
            continue
        raw_query = urlparse(m.group(1)).query
        sent = (parse_qs(url.query).get("token") or [None])[0]
        sent_vars = {v for v, _ in INTERP.findall(raw_query)}
        if sent != token or (token_vars is not None and sent_vars != token_vars):
            errors.append(f"{name}: --webhook-url {m.group(1)} does not send the exporter's webhook token "
                          f"(the same variables and default): the exporter would answer 401, or 404 without one")

    # Prometheus: its config and rules, and the hosts it talks to.
    prom_dir = mounts.get("prometheus", {}).get("/etc/prometheus")
    if prom_dir is None:
        errors.append("prometheus: deploy/prometheus is not mounted at /etc/prometheus")
    elif (prom_dir / "prometheus.yml").is_file():
        prom = yaml.safe_load((prom_dir / "prometheus.yml").read_text(encoding="utf-8")) or {}
        for rf in prom.get("rule_files", []) or []:
            if not list(prom_dir.glob(rf)):
                errors.append(f"prometheus.yml: rule file {rf} not found in {prom_dir.relative_to(ROOT)}")
        targets = []
        for sc in prom.get("scrape_configs", []) or []:
            for st in sc.get("static_configs", []) or []:
                targets += [(f"scrape job {sc.get('job_name')}", t) for t in st.get("targets", [])]
        for am in (prom.get("alerting") or {}).get("alertmanagers", []) or []:
            for st in am.get("static_configs", []) or []:
                targets += [("alertmanagers", t) for t in st.get("targets", [])]
        for where, target in targets:
            host = target.rsplit(":", 1)[0]
            if host not in names and host not in ("localhost", "127.0.0.1"):
                errors.append(f"prometheus.yml {where}: target {target} is not a service of the stack")
    else:
        errors.append(f"{prom_dir}/prometheus.yml does not exist")

    # Grafana: datasource URL, dashboard provider path, home dashboard.
    gmounts = mounts.get("grafana", {})
    prov = gmounts.get("/etc/grafana/provisioning")
    if prov is None:
        errors.append("grafana: deploy/grafana/provisioning is not mounted at /etc/grafana/provisioning")
    else:
        for f in sorted((prov / "datasources").glob("*.y*ml")):
            for ds in (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("datasources", []):
                host = urlparse(ds.get("url", "")).hostname
                if host not in names:
                    errors.append(f"{f.relative_to(ROOT)}: datasource {ds.get('name')} URL host {host} is not a service")
        for f in sorted((prov / "dashboards").glob("*.y*ml")):
            for p in (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("providers", []):
                path = (p.get("options") or {}).get("path", "")
                src = gmounts.get(path)
                if src is None:
                    errors.append(f"{f.relative_to(ROOT)}: provider path {path} is not a mount of the grafana service")
                elif not list(src.glob("*.json")):
                    errors.append(f"{f.relative_to(ROOT)}: no dashboards in {src}")
    home = (services.get("grafana", {}).get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        base, _, fname = home.rpartition("/")
        if base not in gmounts or not (gmounts[base] / fname).is_file():
            errors.append(f"grafana: home dashboard {home} is not a mounted file")

    for e in errors:
        print(f"check-compose: {e}", file=sys.stderr)
    if not errors:
        print(f"{COMPOSE.relative_to(ROOT)}: {len(services)} services, references check out")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
