#!/usr/bin/env python3
"""Checks that a deployment keeps the exporter's state (--storage.path).

Every shipped deployment sets --storage.path (or MONOGOTO_EXPORTER_STORAGE_PATH,
or the configuration file's storage.path) to a directory that survives the
process and belongs to that one exporter:

  check-storage.py systemd UNIT
      StateDirectory= names the state directory, and ExecStart passes
      --storage.path under it (%S/<it>, ${STATE_DIRECTORY} or /var/lib/<it>).
  check-storage.py debian CONFIG UNIT
      the configuration file's storage.path is the unit's state directory
      (/var/lib/<StateDirectory>), so that the two never name different ones.
  check-storage.py kubernetes-base RENDER
      the Deployment mounts a PersistentVolumeClaim of the render, writable, at
      its --storage.path; it runs one replica with strategy Recreate (the
      volume is ReadWriteOnce, and two exporters never share one state); the
      pod's fsGroup lets the non-root user write it.
  check-storage.py kubernetes-sharded RENDER
      the StatefulSet mounts one of its volumeClaimTemplates (one volume per
      shard) at its --storage.path, with fsGroup set, and the render holds no
      PersistentVolumeClaim that the shards would share.
  check-storage.py dockerfile DOCKERFILE
      the final stage sets MONOGOTO_EXPORTER_STORAGE_PATH, declares VOLUME at
      that path, and creates it owned by the USER it runs as (COPY --chown), so
      that a fresh named volume mounted there is writable.

(The compose file is checked by scripts/check-compose.py.) Prints one line on
success, every problem on failure (exit 1). Needs PyYAML (scripts/check-deploy.sh
runs it in its venv).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import sys
from pathlib import Path

import yaml

FLAG = "--storage.path"
ENV = "MONOGOTO_EXPORTER_STORAGE_PATH"


class Failed(Exception):
    pass


def norm(path: str) -> str:
    return posixpath.normpath(path) if path else path


def flag_value(words: list[str], flag: str = FLAG) -> str | None:
    """The value of --flag=V or --flag V among words (the last one wins)."""
    value = None
    for i, w in enumerate(words):
        if w.startswith(flag + "="):
            value = w.split("=", 1)[1]
        elif w == flag and i + 1 < len(words):
            value = words[i + 1]
    return value


# ---------------------------------------------------------------- systemd
def unit_settings(unit: Path) -> dict[str, list[str]]:
    """[Service] settings of a unit file, continuation lines joined."""
    settings: dict[str, list[str]] = {}
    section = None
    text = re.sub(r"\\\n", " ", unit.read_text(encoding="utf-8"))
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def state_directories(unit: Path) -> list[str]:
    dirs = [d for v in unit_settings(unit).get("StateDirectory", []) for d in v.split()]
    if not dirs:
        raise Failed(f"{unit}: no StateDirectory=: with DynamicUser= and ProtectSystem=strict the "
                     "service can write nowhere to keep its state")
    return [d.split(":", 1)[0] for d in dirs]


def check_systemd(unit: Path) -> str:
    dirs = state_directories(unit)
    starts = unit_settings(unit).get("ExecStart", [])
    if len(starts) != 1:
        raise Failed(f"{unit}: expected one ExecStart=, found {len(starts)}")
    path = flag_value(shlex.split(starts[0]))
    if path is None:
        raise Failed(f"{unit}: ExecStart does not pass {FLAG}: the exporter would keep no state")
    allowed = {f"%S/{d}" for d in dirs} | {f"/var/lib/{d}" for d in dirs}
    if len(dirs) == 1:
        allowed |= {"${STATE_DIRECTORY}", "$STATE_DIRECTORY"}
    if norm(path) not in {norm(a) for a in allowed}:
        raise Failed(f"{unit}: {FLAG}={path} is not its StateDirectory= ({' '.join(dirs)}): "
                     f"expected one of {', '.join(sorted(allowed))}")
    return f"{unit}: StateDirectory={' '.join(dirs)}, ExecStart {FLAG}={path}"


def check_debian(config: Path, unit: Path) -> str:
    dirs = state_directories(unit)
    doc = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    path = (doc.get("storage") or {}).get("path")
    if not path:
        raise Failed(f"{config}: no storage.path: the package's configuration must keep the state")
    if norm(str(path)) not in {f"/var/lib/{d}" for d in dirs}:
        raise Failed(f"{config}: storage.path {path} is not the unit's state directory "
                     f"({', '.join(f'/var/lib/{d}' for d in dirs)}, StateDirectory= of {unit})")
    return f"{config}: storage.path {path}, the unit's StateDirectory="


# ---------------------------------------------------------------- kubernetes
def render_docs(render: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(render.read_text(encoding="utf-8")) if d]


def one(docs: list[dict], kind: str, render: Path) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise Failed(f"{render}: expected one {kind}, found {len(found)}")
    return found[0]


def container_state_mount(workload: dict) -> tuple[str, dict, str]:
    """(--storage.path, its volumeMount, what) of the exporter's container."""
    kind = workload["kind"]
    pod = workload["spec"]["template"]["spec"]
    containers = pod.get("containers", [])
    c = next((c for c in containers if c.get("name") == "monogoto-exporter"), containers[0] if containers else None)
    if c is None:
        raise Failed(f"{kind}: no container")
    what = f"{kind} container {c.get('name')}"
    path = flag_value([str(a) for a in c.get("args", []) or []])
    if path is None:
        env = {e.get("name"): e.get("value") for e in c.get("env", []) or []}
        path = env.get(ENV)
    if not path:
        raise Failed(f"{what}: no {FLAG} in args (nor {ENV}): the exporter would keep no state")
    mounts = [m for m in c.get("volumeMounts", []) or [] if norm(m.get("mountPath", "")) == norm(path)]
    if not mounts:
        raise Failed(f"{what}: nothing is mounted at {FLAG}={path}: the state would be lost with the pod "
                     "(or not written at all on a read-only root file system)")
    mount = mounts[0]
    if mount.get("readOnly"):
        raise Failed(f"{what}: the volume at {path} is mounted readOnly")
    if mount.get("subPath") or mount.get("subPathExpr"):
        raise Failed(f"{what}: the volume at {path} is mounted with a subPath (fsGroup does not reach it)")
    if "fsGroup" not in (pod.get("securityContext") or {}):
        raise Failed(f"{kind}: no pod securityContext.fsGroup: the non-root exporter cannot write its state volume")
    return path, mount, what


def check_kubernetes_base(render: Path) -> str:
    docs = render_docs(render)
    deploy = one(docs, "Deployment", render)
    path, mount, what = container_state_mount(deploy)
    volumes = {v.get("name"): v for v in deploy["spec"]["template"]["spec"].get("volumes", []) or []}
    volume = volumes.get(mount["name"], {})
    claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
    if not claim:
        raise Failed(f"{what}: the volume {mount['name']} at {FLAG}={path} is not a PersistentVolumeClaim "
                     f"({', '.join(k for k in volume if k != 'name') or 'undefined'}): the state would not "
                     "outlive the pod")
    pvcs = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    if claim not in pvcs:
        raise Failed(f"{what}: the PersistentVolumeClaim {claim} at {path} is not in the render")
    strategy = (deploy["spec"].get("strategy") or {}).get("type", "RollingUpdate")
    if strategy != "Recreate":
        raise Failed(f"Deployment: strategy {strategy}, not Recreate: during a rollout two pods would share "
                     f"the state volume {claim} (ReadWriteOnce; two exporters must never share one state)")
    replicas = deploy["spec"].get("replicas", 1)
    if replicas != 1:
        raise Failed(f"Deployment: {replicas} replicas would share the state volume {claim}")
    return f"{render}: Deployment mounts PersistentVolumeClaim {claim} at {FLAG}={path}, strategy Recreate"


def check_kubernetes_sharded(render: Path) -> str:
    docs = render_docs(render)
    sts = one(docs, "StatefulSet", render)
    path, mount, what = container_state_mount(sts)
    templates = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", []) or []}
    if mount["name"] not in templates:
        raise Failed(f"{what}: the volume {mount['name']} at {FLAG}={path} is not one of the StatefulSet's "
                     f"volumeClaimTemplates ({', '.join(sorted(templates)) or 'none'}): each shard needs a "
                     "state volume of its own")
    shared = sorted(d["metadata"]["name"] for d in docs if d.get("kind") == "PersistentVolumeClaim")
    if shared:
        raise Failed(f"{render}: PersistentVolumeClaim {', '.join(shared)} in the sharded render (the base's?): "
                     "the shards keep their state in the volumeClaimTemplates, never in one shared volume")
    return f"{render}: StatefulSet mounts volumeClaimTemplate {mount['name']} at {FLAG}={path}"


# ---------------------------------------------------------------- Dockerfile
def dockerfile_instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not pending:
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    out: list[tuple[str, str]] = []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            out = []
        out.append((word.upper(), rest.strip()))
    return out


def check_dockerfile(dockerfile: Path) -> str:
    instructions = dockerfile_instructions(dockerfile)
    env: dict[str, str] = {}
    volumes: list[str] = []
    user = None
    copies: list[list[str]] = []
    for word, rest in instructions:
        if word == "ENV":
            words = shlex.split(rest)
            if words and "=" not in words[0]:
                env[words[0]] = " ".join(words[1:])  # legacy ENV key value
            else:
                env.update(w.split("=", 1) for w in words)
        elif word == "VOLUME":
            volumes += json.loads(rest) if rest.startswith("[") else rest.split()
        elif word == "USER":
            user = rest.split(":", 1)[0]
        elif word in ("COPY", "ADD"):
            copies.append(json.loads(rest) if rest.startswith("[") else shlex.split(rest))
    path = env.get(ENV)
    if not path:
        raise Failed(f"{dockerfile}: the final stage sets no ENV {ENV}: the image would keep no state")
    if norm(path) not in {norm(v) for v in volumes}:
        raise Failed(f"{dockerfile}: no VOLUME at {ENV}={path} (VOLUME: {', '.join(volumes) or 'none'})")
    owners = [flag_value(c, "--chown") for c in copies if c and norm(c[-1]) == norm(path)]
    if not owners or owners[-1] is None:
        raise Failed(f"{dockerfile}: {path} is not created by a COPY --chown=<the USER>: a fresh named volume "
                     "mounted there would be root's, and the exporter could not write it")
    owner = owners[-1].split(":", 1)[0]
    if user is None or owner != user:
        raise Failed(f"{dockerfile}: {path} is owned by {owners[-1]}, but the image runs as USER {user}")
    return f"{dockerfile}: ENV {ENV}={path}, VOLUME {path}, owned by USER {user}"


def main(argv: list[str]) -> int:
    checks = {
        "systemd": (check_systemd, 1),
        "debian": (check_debian, 2),
        "kubernetes-base": (check_kubernetes_base, 1),
        "kubernetes-sharded": (check_kubernetes_sharded, 1),
        "dockerfile": (check_dockerfile, 1),
    }
    if len(argv) < 2 or argv[1] not in checks or len(argv) - 2 != checks[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    func, _ = checks[argv[1]]
    try:
        print(func(*(Path(a) for a in argv[2:])))
    except Failed as e:
        print(f"check-storage: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, IndexError, yaml.YAMLError, json.JSONDecodeError, ValueError) as e:
        print(f"check-storage: {argv[1]}: cannot read {' '.join(argv[2:])}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
