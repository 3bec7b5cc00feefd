#!/usr/bin/env bash
# Installs what masrun's test suite needs on a fresh Debian 12 machine (as root), then runs
# the whole suite. A component that cannot be installed makes this fail; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in openssl:openssl runuser:util-linux setsid:util-linux getent:libc-bin useradd:passwd pgrep:procps; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

if [ ! -f ../shared/reference/mas-config.schema.json ]; then
    echo "tests/run.sh: ../shared/reference/mas-config.schema.json is missing; the schema test needs it" >&2
    exit 1
fi

cargo test --locked --all-targets
