#!/usr/bin/env bash
# Creates ./.venv with the gnnrec CLI installed, on a fresh machine or a fresh clone.
#
# The heavy dependencies (torch and its CUDA wheels are ~6 GB) are installed once per
# lockfile hash into a cached virtualenv under $GNNREC_CACHE (default ~/.cache/gnnrec).
# .venv itself is a small venv whose site-packages points at that cache through a .pth
# file, plus an editable install of this checkout, so a new clone is ready in seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
cache=${GNNREC_CACHE:-$HOME/.cache/gnnrec}
hash=$(cat requirements.lock | sha256sum | cut -c1-16)
deps="$cache/deps-$hash"
mkdir -p "$cache"

if [ ! -f "$deps/.complete" ]; then
    exec 9>"$cache/.lock"
    flock 9
    if [ ! -f "$deps/.complete" ]; then
        echo "gnnrec: installing pinned dependencies into $deps (once per lockfile; a few minutes)" >&2
        rm -rf "$deps.tmp"
        "$python" -m venv "$deps.tmp"
        "$deps.tmp/bin/python" -m pip install -q --upgrade pip
        "$deps.tmp/bin/python" -m pip install -q --no-deps -r requirements.lock
        rm -rf "$deps"
        # venvs hard-code their own path in scripts; nothing is run from the cache's bin/,
        # only its site-packages is imported, so renaming after install is safe.
        mv "$deps.tmp" "$deps"
        touch "$deps/.complete"
    fi
    flock -u 9
fi

site_deps=$("$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null \
    || echo "$deps/lib/python3.11/site-packages")
site_deps="${site_deps/$deps.tmp/$deps}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
site_local=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$site_deps" > "$site_local/_gnnrec_deps.pth"
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    # compat mode = a .pth entry for the checkout, so packages added later import without reinstalling
    .venv/bin/python -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e . 2>/dev/null \
        || .venv/bin/python -m pip install -q --no-deps --config-settings editable_mode=compat -e .
    touch .venv/.installed
fi
bash "$root/deploy/build_native.sh"
echo "gnnrec: .venv ready (deps from $deps)" >&2
