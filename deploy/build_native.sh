#!/usr/bin/env bash
# Builds graph_store/_native.abi3.so (the ingest store's Rust kernel, graph_store/native/) when
# its sources are newer than the library. Called by bootstrap_venv.sh, so `make demo` and
# `make test` build it on a fresh machine. Cargo's build directory lives in the cache
# ($GNNREC_CACHE, default ~/.cache/gnnrec), so a new clone reuses the compiled crates.
#
# Without cargo this only warns: the ingest worker then runs the Python store (`--native auto`);
# with GNNREC_REQUIRE_NATIVE=1 (CI) a failed build is an error.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
crate="$root/graph_store/native"
out="$root/graph_store/_native.abi3.so"
cache=${GNNREC_CACHE:-$HOME/.cache/gnnrec}
require=${GNNREC_REQUIRE_NATIVE:-0}

fail() {
    if [ "$require" = "1" ]; then
        echo "build_native: ERROR: $*" >&2
        exit 1
    fi
    echo "build_native: WARNING: $* (the ingest worker will use the Python store)" >&2
    exit 0
}

if [ -f "$out" ] && [ -z "$(find "$crate/Cargo.toml" "$crate/Cargo.lock" "$crate/src" -newer "$out" 2>/dev/null)" ]; then
    exit 0  # up to date
fi
cargo=$(command -v cargo || true)
[ -z "$cargo" ] && [ -x "$HOME/.cargo/bin/cargo" ] && cargo="$HOME/.cargo/bin/cargo"
[ -z "$cargo" ] && fail "cargo not found (install Rust from https://rustup.rs)"
echo "build_native: building graph_store/_native with $("$cargo" --version) (once per source change; ~1 min)" >&2
mkdir -p "$cache"
if ! CARGO_TARGET_DIR="$cache/native-target" "$cargo" build --release --locked --quiet --manifest-path "$crate/Cargo.toml"; then
    fail "cargo build of graph_store/native failed (output above)"
fi
# Copy then rename: a process that has the old library loaded keeps its mapping.
cp "$cache/native-target/release/libgnnrec_native.so" "$out.tmp" && mv -f "$out.tmp" "$out"
echo "build_native: built $out" >&2
