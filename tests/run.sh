#!/usr/bin/env bash
# Installs what masrun's test suite needs on a fresh Debian 12 machine (as root), then runs
# the whole suite. A component that cannot be installed makes this fail; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# The service tests boot a Debian node with systemd-nspawn from a root file system built with
# debootstrap (podman and PostgreSQL come inside it), bind-mount the host's docker client into
# it (docker.io is Debian 12's only package with that client) and start throwaway PostgreSQL
# clusters on the host. The SSH tests log in as throwaway users with sudo rules.
for tool in openssl:openssl runuser:util-linux setsid:util-linux getent:libc-bin useradd:passwd \
    pgrep:procps nginx:nginx-light /usr/sbin/sshd:openssh-server ssh-keygen:openssh-client \
    ip:iproute2 systemd-nspawn:systemd-container debootstrap:debootstrap nsenter:util-linux \
    chroot:coreutils psql:postgresql-client docker:docker.io sqlite3:sqlite3 sudo:sudo \
    visudo:sudo chpasswd:passwd; do
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

# A real Synapse from PyPI, in a virtualenv cached outside the repository.
synapse_venv=${MASRUN_TEST_SYNAPSE_VENV:-/var/cache/masrun-tests/synapse-venv}
if [ ! -x "$synapse_venv/bin/synapse_homeserver" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3-venv
    fi
    rm -rf "$synapse_venv"
    mkdir -p "$(dirname "$synapse_venv")"
    python3 -m venv "$synapse_venv"
    "$synapse_venv/bin/pip" install -q 'matrix-synapse>=1.136'
fi
# The node tests run Synapse on PostgreSQL; the binary wheel needs no compiler or libpq-dev.
if ! "$synapse_venv/bin/python" -c 'import psycopg2' >/dev/null 2>&1; then
    "$synapse_venv/bin/pip" install -q psycopg2-binary
fi
export MASRUN_TEST_SYNAPSE_VENV=$synapse_venv

# sshd refuses to start without its privilege separation directory.
mkdir -p /run/sshd

if [ ! -f ../shared/reference/mas-config.schema.json ]; then
    echo "tests/run.sh: ../shared/reference/mas-config.schema.json is missing; the schema test needs it" >&2
    exit 1
fi

cargo test --locked
