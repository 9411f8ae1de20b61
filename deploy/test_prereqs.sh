#!/usr/bin/env bash
# Prerequisites of the integration tests, called by `make test` before pytest:
#   1. Debian's `prometheus` binary (for tests/integration/test_prometheus.py);
#   2. Debian's `kcat` (librdkafka's command-line client, for tests/integration/test_clients.py);
#   3. the Apache Kafka jars fetched from Maven Central into ~/.cache/gnnrec/kafka-<version>.
# Idempotent and fast when done. Outside CI a missing apt or network only warns (those tests
# then skip with the reason); with CI=true any failure is an error.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PY:-$root/.venv/bin/python}
in_ci=false
[ "${CI:-}" = "true" ] && in_ci=true
status=0

problem() {
    if $in_ci; then
        echo "test_prereqs: ERROR: $*" >&2
        status=1
    else
        echo "test_prereqs: WARNING: $* (the tests that need it will skip)" >&2
    fi
}

install_debian_package() {  # $1: package name
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            problem "$1 is not installed and apt-get needs root (no passwordless sudo)"
            return
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        problem "$1 is not installed and apt-get is not available; install it yourself"
        return
    fi
    # The package would start its daemon on :9090; a policy-rc.d that denies service starts
    # keeps it stopped (restored afterwards if one already existed).
    local policy=/usr/sbin/policy-rc.d backup=""
    if [ -e "$policy" ]; then
        backup=$(mktemp)
        $sudo cp -p "$policy" "$backup"
    fi
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    echo "test_prereqs: installing $1 with apt-get" >&2
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
            --no-install-recommends "$1" >/dev/null; }; then
        problem "apt-get install $1 failed"
    fi
    if [ -n "$backup" ]; then
        $sudo cp -p "$backup" "$policy"
        rm -f "$backup"
    else
        $sudo rm -f "$policy"
    fi
}

if ! command -v prometheus >/dev/null; then
    install_debian_package prometheus
fi
if ! command -v kcat >/dev/null; then
    install_debian_package kcat
fi

if ! (cd "$root" && "$py" -m stream.brokers.apache --resolve >&2); then
    problem "could not fetch the Apache Kafka jars from Maven Central (see the output above)"
fi

exit $status
