#!/usr/bin/env bash
# Installs what masrun's test suite needs on a fresh Debian 12 machine (as root), then runs
# the whole suite. A component that cannot be installed makes this fail; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# The service tests boot a Debian node with systemd-nspawn from a root file system built with
# debootstrap (podman and PostgreSQL come inside it), bind-mount the host's docker client into
# it (docker.io is Debian 12's only package with that client) and start throwaway PostgreSQL
# clusters on the host.
for tool in openssl:openssl runuser:util-linux getent:libc-bin useradd:passwd \
    systemd-nspawn:systemd-container debootstrap:debootstrap ip:iproute2 nsenter:util-linux \
    chroot:coreutils psql:postgresql-client docker:docker.io; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting the servers they install (dockerd, PostgreSQL).
    policy_added=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
    if [ -n "$policy_added" ]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
fi

if [ ! -f ../shared/reference/mas-config.schema.json ]; then
    echo "tests/run.sh: ../shared/reference/mas-config.schema.json is missing; the schema test needs it" >&2
    exit 1
fi

cargo test --locked --all-targets
