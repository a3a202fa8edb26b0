#!/usr/bin/env bash
# Builds the Debian package (cargo deb, from Cargo.toml's [package.metadata.deb]),
# installs it on this machine with dpkg -i, checks what it installed, and
# purges it again:
#
#   - the package holds the binary, the systemd unit and the example
#     configuration, and /etc/monogoto-exporter/config.yml is a conffile;
#   - /usr/bin/monogoto-exporter --version names this version;
#   - the unit's own ExecStart, with --config.check added, its credentials
#     directory (%d) holding a scratch token and its state directory (%S) a
#     scratch one, accepts the shipped configuration, run as an unprivileged
#     user as the service's DynamicUser would (never contacting the API);
#   - the unit keeps the exporter's state in its StateDirectory=: ExecStart
#     passes --storage.path=%S/<it>, and the installed configuration's
#     storage.path names the same directory (/var/lib/<it>);
#   - systemd-analyze verify of the installed unit (now that its binary
#     exists) is clean, and its security exposure is at most 2.0.
#
# Installs cargo-deb (pinned) into $CI_TOOLS_DIR/cargo-deb (default
# target/ci-tools) when missing, and dpkg-dev and systemd from apt when
# dpkg-shlibdeps or systemd-analyze are missing. Reuses the release build
# (cargo build --release --locked). Needs root or sudo for dpkg.
# CHECK_DEB_KEEP=1 leaves the package installed.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
PACKAGE=monogoto-exporter
CONFIG=/etc/monogoto-exporter/config.yml
# 10 times the highest acceptable exposure, systemd-analyze's unit.
MAX_EXPOSURE_TENTHS=20

tools="${CI_TOOLS_DIR:-$PWD/target/ci-tools}"
mkdir -p "$tools"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

log() { printf 'check-deb: %s\n' "$*" >&2; }
fail() {
    log "FAIL: $*"
    exit 1
}

missing=()
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
cargo_deb="$tools/cargo-deb/bin/cargo-deb"
if [ "$("$cargo_deb" --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    log "installing cargo-deb $CARGO_DEB_VERSION into $tools/cargo-deb"
    cargo install --quiet --locked --force --version "$CARGO_DEB_VERSION" --root "$tools/cargo-deb" cargo-deb
fi

log "cargo build --release --locked"
cargo build --release --locked
log "cargo deb --no-build --strip"
# Stripped: the release profile keeps line tables (for backtraces), which
# would make the installed binary several times larger.
deb="$("$cargo_deb" --no-build --strip --locked | tail -n 1)"
[ -f "$deb" ] || fail "cargo deb did not say where the package is (got: $deb)"
log "built $deb"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/check-deb.XXXXXX")"
installed=0
cleanup() {
    local rc=$?
    if [ "$installed" -eq 1 ] && [ -z "${CHECK_DEB_KEEP:-}" ]; then
        "${sudo_cmd[@]}" dpkg --purge "$PACKAGE" >/dev/null || rc=1
    fi
    rm -rf "$scratch"
    if [ "$rc" -eq 0 ]; then log "PASS"; else log "FAILED"; fi
    exit "$rc"
}
trap cleanup EXIT

# --- the package's contents ------------------------------------------------------
contents="$(dpkg-deb --contents "$deb")"
for path in ./usr/bin/monogoto-exporter "./lib/systemd/system/$PACKAGE.service" ".$CONFIG"; do
    # Newer cargo-deb releases install units under /usr/lib.
    alt="${path/.\/lib\//./usr/lib/}"
    grep -qE " ($path|$alt)\$" <<<"$contents" || fail "$deb does not contain $path"
done
# (Captured first: grep -q leaving a pipe early would fail it under pipefail.)
depends="$(dpkg-deb --field "$deb" Depends)"
grep -q libc6 <<<"$depends" || fail "the package does not depend on libc6 (depends = \$auto): $depends"
# The systemd scripts cargo deb adds: a daemon-reload when the unit changes.
postinst="$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst)"
grep -q "daemon-reload" <<<"$postinst" || fail "the package's postinst does not reload systemd"

# --- install -----------------------------------------------------------------------
log "dpkg -i $deb"
"${sudo_cmd[@]}" dpkg -i "$deb" >/dev/null
installed=1
dpkg-query -W -f='${Conffiles}\n' "$PACKAGE" | grep -q " $CONFIG " ||
    fail "$CONFIG is not a conffile of $PACKAGE"
unit="$(dpkg -L "$PACKAGE" | grep -E "/systemd/system/$PACKAGE\\.service\$" | head -n 1)"
[ -n "$unit" ] || fail "$PACKAGE installed no systemd unit"

# --- the installed binary -----------------------------------------------------------
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
out="$(/usr/bin/monogoto-exporter --version)"
case "$out" in
    "monogoto-exporter $version (revision "*", rustc "*")") log "ok: --version: $out" ;;
    *) fail "/usr/bin/monogoto-exporter --version printed: $out" ;;
esac

# The unit's ExecStart, continuation lines joined, as words.
exec_start="$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$unit" | sed -n 's/^ExecStart=//p')"
[ -n "$exec_start" ] || fail "no ExecStart= in $unit"
read -r -a command <<<"$exec_start"
[ "${command[0]}" = /usr/bin/monogoto-exporter ] || fail "ExecStart runs ${command[0]}"
# The state: in the StateDirectory= that systemd makes writable for the dynamic
# user, passed as the flag, and the same directory in the configuration file.
state_dir="$(sed -n 's/^StateDirectory=//p' "$unit")"
[ -n "$state_dir" ] || fail "$unit has no StateDirectory= for the exporter's state"
case " ${command[*]} " in
    *" --storage.path=%S/$state_dir "*) ;;
    *) fail "ExecStart does not pass --storage.path=%S/$state_dir (its StateDirectory=): ${command[*]}" ;;
esac
config_storage="$(sed -n '/^storage:/,/^[^[:space:]#]/s/^[[:space:]]\{1,\}path:[[:space:]]*//p' "$CONFIG")"
[ "$config_storage" = "/var/lib/$state_dir" ] ||
    fail "$CONFIG: storage.path is '$config_storage', not the unit's state directory /var/lib/$state_dir"
for i in "${!command[@]}"; do
    command[i]="${command[i]//%d/$scratch/credentials}"
    command[i]="${command[i]//%S/$scratch/state}"
done
case " ${command[*]} " in
    *" --config.file=$CONFIG "*) ;;
    *) fail "ExecStart does not read $CONFIG: ${command[*]}" ;;
esac
# As an unprivileged user, as the service's DynamicUser: the files it names
# must be readable by it. Its credentials and state directories, as systemd
# makes them, are the service user's and private.
run_as=()
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1; then
    run_as=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
fi
mkdir -p "$scratch/credentials"
printf 'config-check-token\n' >"$scratch/credentials/monogoto-token"
chmod 0711 "$scratch"
chmod 0500 "$scratch/credentials"
chmod 0400 "$scratch/credentials/monogoto-token"
mkdir -p "$scratch/state/$state_dir"
chmod 0700 "$scratch/state/$state_dir"
if [ ${#run_as[@]} -gt 0 ]; then
    chown -R 65534:65534 "$scratch/credentials" "$scratch/state/$state_dir"
fi
if ! out="$(env -i PATH=/usr/bin:/bin "${run_as[@]}" "${command[@]}" --config.check 2>&1)"; then
    fail "the unit's ExecStart --config.check rejects the shipped configuration: $out"
fi
grep -q "configuration OK" <<<"$out" || fail "unexpected --config.check output: $out"
grep -q "auth: token" <<<"$out" || fail "the token credential was not used: $out"
if grep -q "warning:" <<<"$out"; then fail "--config.check warns about the shipped configuration: $out"; fi
log "ok: ExecStart --config.check accepts $CONFIG:"
printf '%s\n' "$out" | sed 's/^/    /' >&2

# --- the installed unit -------------------------------------------------------------
out="$(systemd-analyze verify "$unit" 2>&1)" || fail "systemd-analyze verify $unit: $out"
[ -z "$out" ] || fail "systemd-analyze verify $unit is not clean: $out"
log "ok: systemd-analyze verify $unit"
out="$(systemd-analyze security --offline=true --threshold="$MAX_EXPOSURE_TENTHS" "$unit" 2>&1)" ||
    fail "systemd-analyze security $unit: exposure above 2.0: $(tail -n 1 <<<"$out")"
log "ok: $(tail -n 1 <<<"$out")"
