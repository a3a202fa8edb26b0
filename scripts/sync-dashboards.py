#!/usr/bin/env python3
"""Copy dashboards/*.json into deploy/kubernetes/base/dashboards/ for kustomize.

    scripts/sync-dashboards.py                    # (re)write the copies
    scripts/sync-dashboards.py --check            # exit 1 if a copy differs, is missing or extra
    scripts/sync-dashboards.py --check-render F   # and: the ConfigMap of the kustomize render F
                                                  # holds every dashboard, byte for byte

The kustomize base turns the dashboards into a ConfigMap for the Grafana sidecar
(configMapGenerator). kustomize reads no file outside the kustomization's
directory, symlinks included (its load restrictor resolves them), so the base
holds copies. dashboards/ stays the one source: the copies are byte-identical,
which makes `--check` a plain comparison, and CI runs it (scripts/check-deploy.sh).

Python 3 standard library only (PyYAML for --check-render).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "dashboards"
COPIES = ROOT / "deploy/kubernetes/base/dashboards"
CONFIGMAP = "monogoto-exporter-dashboards"
LABEL = ("grafana_dashboard", "1")
# A ConfigMap holds at most 1 MiB; `kubectl apply` (client side) also copies it
# into an annotation, which is limited to 256 KiB.
MAX_BYTES = 256 * 1024


def sources() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(SOURCE.glob("*.json"))}


def problems(want: dict[str, bytes]) -> list[str]:
    have = {p.name: p.read_bytes() for p in sorted(COPIES.glob("*.json"))} if COPIES.is_dir() else {}
    rel = COPIES.relative_to(ROOT)
    out = []
    for name in sorted(want.keys() - have.keys()):
        out.append(f"{rel}/{name} is missing")
    for name in sorted(have.keys() - want.keys()):
        out.append(f"{rel}/{name} has no dashboards/{name}")
    for name in sorted(want.keys() & have.keys()):
        if want[name] != have[name]:
            out.append(f"{rel}/{name} differs from dashboards/{name}")
    total = sum(len(b) for b in want.values())
    if total > MAX_BYTES:
        out.append(f"the dashboards take {total} bytes, more than the {MAX_BYTES} one ConfigMap should hold")
    return out


def check_render(rendered: Path, want: dict[str, bytes]) -> list[str]:
    import yaml  # type: ignore[import-not-found]

    docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
    maps = [d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == CONFIGMAP]
    if len(maps) != 1:
        return [f"{rendered}: expected one ConfigMap {CONFIGMAP}, found {len(maps)}"]
    cm = maps[0]
    out = []
    if cm["metadata"].get("labels", {}).get(LABEL[0]) != LABEL[1]:
        out.append(f"ConfigMap {CONFIGMAP} lacks the label {LABEL[0]}: \"{LABEL[1]}\" the Grafana sidecar selects")
    data = cm.get("data", {})
    if sorted(data) != sorted(want):
        out.append(f"ConfigMap {CONFIGMAP} holds {sorted(data)}, dashboards/ has {sorted(want)}: "
                   f"list every dashboard in deploy/kubernetes/base/kustomization.yaml")
    for name in sorted(want.keys() & data.keys()):
        if data[name].encode("utf-8") != want[name]:
            out.append(f"ConfigMap {CONFIGMAP} key {name} differs from dashboards/{name}")
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the copies are out of date")
    ap.add_argument("--check-render", type=Path, metavar="FILE",
                    help="with --check: also check the dashboards ConfigMap of this `kubectl kustomize` output")
    args = ap.parse_args(argv)

    want = sources()
    if not want:
        print("sync-dashboards: no dashboards/*.json", file=sys.stderr)
        return 1
    if args.check or args.check_render:
        found = problems(want)
        if args.check_render:
            found += check_render(args.check_render, want)
        for p in found:
            print(f"sync-dashboards: {p}", file=sys.stderr)
        if found:
            print("sync-dashboards: run scripts/sync-dashboards.py", file=sys.stderr)
            return 1
        print(f"{COPIES.relative_to(ROOT)} is in sync with dashboards/ ({len(want)} dashboards)")
        return 0
    COPIES.mkdir(parents=True, exist_ok=True)
    for stale in sorted(COPIES.glob("*.json")):
        if stale.name not in want:
            stale.unlink()
            print(f"removed {stale.relative_to(ROOT)}")
    for name, body in want.items():
        dest = COPIES / name
        if not dest.exists() or dest.read_bytes() != body:
            dest.write_bytes(body)
            print(f"wrote {dest.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
