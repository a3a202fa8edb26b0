#!/usr/bin/env python3
"""Checks that the Kubernetes deployments wire the webhook receiver (POST /webhook).

  check-webhook.py kubernetes-base RENDER
      the Deployment's exporter takes MONOGOTO_WEBHOOK_TOKEN from a Secret
      (secretKeyRef, never a value written in the manifest), optional unless
      that Secret and key are in the render (a required reference to a Secret
      that does not exist keeps the pod from starting); a Service that is not
      headless selects its pods and reaches the container's port, for the
      Hub's requests.
  check-webhook.py kubernetes-sharded RENDER
      the same of the StatefulSet, and: it passes --shard.peer-url-template,
      an http(s) URL without a path whose host is
      <StatefulSet name>-{index}.<serviceName> (the pods' stable names; a
      namespace may follow) and whose port is the container's port and its
      --web.listen-address; serviceName is a headless Service of the render
      (clusterIP: None) that selects the StatefulSet's pods; the Service for
      the Hub (not headless) is not scraped a second time by a ServiceMonitor
      of the render (its ports do not carry the ServiceMonitor's port name).

(The compose file is checked by scripts/check-compose.py.) Prints one line on
success, every problem on failure (exit 1). Needs PyYAML (scripts/check-deploy.sh
runs it in its venv).
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ENV = "MONOGOTO_WEBHOOK_TOKEN"
TEMPLATE_FLAG = "--shard.peer-url-template"
LISTEN_FLAG = "--web.listen-address"


class Failed(Exception):
    pass


def render_docs(render: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(render.read_text(encoding="utf-8")) if d]


def one(docs: list[dict], kind: str, render: Path) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise Failed(f"{render}: expected one {kind}, found {len(found)}")
    return found[0]


def flag_value(words: list[str], flag: str) -> str | None:
    """The value of --flag=V or --flag V among words (the last one wins)."""
    value = None
    for i, w in enumerate(words):
        if w.startswith(flag + "="):
            value = w.split("=", 1)[1]
        elif w == flag and i + 1 < len(words):
            value = words[i + 1]
    return value


def exporter_container(workload: dict) -> dict:
    containers = workload["spec"]["template"]["spec"].get("containers", []) or []
    c = next((c for c in containers if c.get("name") == "monogoto-exporter"), containers[0] if containers else None)
    if c is None:
        raise Failed(f"{workload['kind']}: no container")
    return c


def container_port(c: dict) -> tuple[int, set]:
    """The port the exporter listens on (its --web.listen-address, default
    19540), and the names and numbers a Service's targetPort may use for it."""
    listen = flag_value([str(a) for a in c.get("args", []) or []], LISTEN_FLAG) or ":19540"
    port = int(listen.rsplit(":", 1)[1])
    ports = [p for p in c.get("ports", []) or [] if p.get("containerPort") == port]
    if not ports:
        raise Failed(f"container {c.get('name')}: no containerPort {port} ({LISTEN_FLAG}={listen})")
    return port, {port} | {p["name"] for p in ports if p.get("name")}


def check_token(workload: dict, docs: list[dict]) -> str:
    what = f"{workload['kind']} {workload['metadata']['name']}"
    c = exporter_container(workload)
    env = [e for e in c.get("env", []) or [] if e.get("name") == ENV]
    args = [str(a) for a in c.get("args", []) or []]
    if flag_value(args, "--webhook.token-file") is not None:
        raise Failed(f"{what}: --webhook.token-file in its args: the shipped wiring is {ENV} from a Secret, "
                     "which may be missing (webhooks off); a file from a missing Secret fails the pod")
    if len(env) != 1:
        raise Failed(f"{what}: {'no' if not env else len(env)} {ENV} in its env: the webhook receiver cannot be "
                     "turned on (expected one, from a Secret)")
    e = env[0]
    if "value" in e:
        raise Failed(f"{what}: {ENV} has a value written in the manifest: take it from a Secret (secretKeyRef)")
    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
    if not ref or not ref.get("name") or not ref.get("key"):
        raise Failed(f"{what}: {ENV} does not come from a Secret (valueFrom.secretKeyRef with name and key)")
    secrets = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Secret"}
    secret = secrets.get(ref["name"])
    has_key = secret is not None and ref["key"] in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
    if not ref.get("optional") and not has_key:
        raise Failed(f"{what}: {ENV} requires key {ref['key']} of Secret {ref['name']}, which the render does "
                     "not hold: the pods would not start until it is created (optional: true turns webhooks "
                     "off instead)")
    shipped = "in the render" if has_key else "not shipped"
    return f"{ENV} from Secret {ref['name']} key {ref['key']} ({'optional, ' if ref.get('optional') else ''}{shipped})"


def selects(service: dict, workload: dict) -> bool:
    selector = service["spec"].get("selector") or {}
    labels = workload["spec"]["template"].get("metadata", {}).get("labels", {}) or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def reaches(service: dict, targets: set) -> bool:
    return any(p.get("targetPort", p.get("port")) in targets for p in service["spec"].get("ports", []) or [])


def hub_services(docs: list[dict], workload: dict, targets: set) -> list[dict]:
    """Services, not headless, that hand requests to the workload's exporter."""
    return [d for d in docs if d.get("kind") == "Service" and d["spec"].get("clusterIP") != "None"
            and selects(d, workload) and reaches(d, targets)]


def check_base(render: Path) -> str:
    docs = render_docs(render)
    deploy = one(docs, "Deployment", render)
    token = check_token(deploy, docs)
    _, targets = container_port(exporter_container(deploy))
    hub = hub_services(docs, deploy, targets)
    if not hub:
        raise Failed(f"{render}: no Service (not headless) selects the Deployment's pods and reaches its port: "
                     "the Hub's webhook requests have no way in")
    return f"{render}: {token}; the Hub's requests through Service {hub[0]['metadata']['name']}"


def check_sharded(render: Path) -> str:
    docs = render_docs(render)
    sts = one(docs, "StatefulSet", render)
    name = sts["metadata"]["name"]
    token = check_token(sts, docs)
    c = exporter_container(sts)
    port, targets = container_port(c)
    args = [str(a) for a in c.get("args", []) or []]
    templates = [a for a in args if a == TEMPLATE_FLAG or a.startswith(TEMPLATE_FLAG + "=")]
    template = flag_value(args, TEMPLATE_FLAG)
    if not template:
        raise Failed(f"StatefulSet {name}: no {TEMPLATE_FLAG}: webhook events for other shards' SIMs would "
                     "be ignored by whichever pod the Service hands them to")
    if len(templates) != 1:
        raise Failed(f"StatefulSet {name}: {len(templates)} {TEMPLATE_FLAG} flags")
    if "{index}" not in template:
        raise Failed(f"StatefulSet {name}: {TEMPLATE_FLAG}={template} has no {{index}}")
    url = urlsplit(template.replace("{index}", "0"))
    if url.scheme not in ("http", "https"):
        raise Failed(f"StatefulSet {name}: {TEMPLATE_FLAG}={template} is not an http(s) URL")
    if url.path.strip("/") or url.query or url.fragment:
        raise Failed(f"StatefulSet {name}: {TEMPLATE_FLAG}={template} has a path or query: it is the base URL, "
                     "to which the exporter adds /webhook")
    service_name = sts["spec"].get("serviceName")
    host = urlsplit(template).netloc.rsplit(":", 1)[0] if url.port else urlsplit(template).netloc
    want = f"{name}-{{index}}.{service_name}"
    if host != want and not host.startswith(want + "."):
        raise Failed(f"StatefulSet {name}: {TEMPLATE_FLAG}={template}: host {host} is not the pods' stable name "
                     f"{want} (StatefulSet name, ordinal, serviceName)")
    url_port = url.port or (443 if url.scheme == "https" else 80)
    if url_port != port:
        raise Failed(f"StatefulSet {name}: {TEMPLATE_FLAG}={template}: port {url_port} is not the exporter's "
                     f"{port} ({LISTEN_FLAG}, containerPort)")
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    governing = services.get(service_name)
    if governing is None:
        raise Failed(f"StatefulSet {name}: serviceName {service_name} is not a Service of the render: the pods "
                     "have no stable names")
    if governing["spec"].get("clusterIP") != "None":
        raise Failed(f"Service {service_name} (serviceName) is not headless (clusterIP: None): the pods have no "
                     f"names {want}")
    if not selects(governing, sts):
        raise Failed(f"Service {service_name} (serviceName) does not select the StatefulSet's pods: they have "
                     "no DNS records under it")
    hub = hub_services(docs, sts, targets)
    if not hub:
        raise Failed(f"{render}: no Service (not headless) selects the StatefulSet's pods and reaches its port: "
                     "the Hub's webhook requests have no way in behind an Ingress or LoadBalancer")
    for monitor in (d for d in docs if d.get("kind") == "ServiceMonitor"):
        match = ((monitor["spec"].get("selector") or {}).get("matchLabels") or {})
        scraped = {e.get("port") for e in monitor["spec"].get("endpoints", []) or []}
        for svc in hub:
            labels = svc["metadata"].get("labels") or {}
            if not all(labels.get(k) == v for k, v in match.items()):
                continue
            names = {p.get("name") for p in svc["spec"].get("ports", []) or []}
            if names & scraped:
                raise Failed(f"ServiceMonitor {monitor['metadata']['name']} scrapes port "
                             f"{', '.join(sorted(names & scraped))} of Service {svc['metadata']['name']} too: "
                             "every pod would be scraped twice (name its port otherwise)")
    return (f"{render}: {token}; {TEMPLATE_FLAG}={template} (headless Service {service_name}); "
            f"the Hub's requests through Service {hub[0]['metadata']['name']}")


def main(argv: list[str]) -> int:
    checks = {"kubernetes-base": check_base, "kubernetes-sharded": check_sharded}
    if len(argv) != 3 or argv[1] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(checks[argv[1]](Path(argv[2])))
    except Failed as e:
        print(f"check-webhook: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, IndexError, ValueError, yaml.YAMLError) as e:
        print(f"check-webhook: {argv[1]}: cannot read {argv[2]}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
