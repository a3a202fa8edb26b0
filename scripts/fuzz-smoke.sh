#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for a short time from its seed corpus:
# the parsers of status answers, rate-limit headers and webhook bodies must
# never panic on any input. CI runs it; a longer search is the README's
# `cargo fuzz run ... -max_total_time=600`.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 20)
#
# Installs cargo-fuzz (crates.io) when missing. The stable toolchain builds the
# targets with RUSTC_BOOTSTRAP=1 (cargo fuzz passes nightly-only flags), without
# a sanitizer: safe Rust has no memory errors for one to find, and a panic is
# the crash libFuzzer reports; it halves the build.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1

# target:seed corpus
targets=(
    status_parser:corpus-seed
    header_parsers:corpus-seed-headers
    event_parser:corpus-seed-events
)
# Once for all targets; each run below reuses the build.
cargo fuzz build --release --sanitizer none
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for entry in "${targets[@]}"; do
    target="${entry%%:*}"
    seeds="${entry#*:}"
    mkdir -p "$work/$target"
    echo "fuzz: $target for ${seconds}s"
    cargo fuzz run --release --sanitizer none "$target" "$work/$target" "$seeds" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 4
done
echo "fuzz: every target ran ${seconds}s without a crash"
