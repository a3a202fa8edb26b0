#!/usr/bin/env bash
# Validates every dashboards/*.json against a JSON Schema generated from the
# `Dashboard` type of npm @grafana/schema (with ts-json-schema-generator, checked
# with ajv), plus the project's dashboard conventions (datasource variable, units,
# stable ids, $__rate_interval, ...). See scripts/dashboard-schema/validate.mjs.
#
# Installs the pinned npm packages of scripts/dashboard-schema/package-lock.json
# with `npm ci` into $CI_TOOLS_DIR/dashboard-schema (default target/ci-tools,
# ignored by git), again only when the lock file changed. Needs node and npm;
# installs Debian's nodejs and npm when they are missing.
#
#   scripts/check-dashboards-schema.sh [DASHBOARD.json...]
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${CI_TOOLS_DIR:-$PWD/target/ci-tools}"
src=scripts/dashboard-schema
dest="$tools/dashboard-schema"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

stamp="$dest/.installed-from"
want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -d "$dest/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" >"$stamp"
fi

if [ "$#" -eq 0 ]; then
    set -- dashboards/*.json
fi
exec node "$src/validate.mjs" --node-modules "$dest/node_modules" \
    --schema-out "$tools/grafana-dashboard.schema.json" "$@"
