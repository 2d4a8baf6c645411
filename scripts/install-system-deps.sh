#!/usr/bin/env bash
# Install the system programs that immortus's test suite and benchmarks run for real (Debian
# packages): redis-server, the PostgreSQL server binaries, chromium (driven headless by the
# browser tests through Playwright, which never downloads a browser of its own) and wrk (the
# HTTP load tool of bench/verify/), and Ruby with ActiveJob, Delayed::Job and
# Sidekiq (the Rails side of the interop tests of immortus.queues.delayed_job and .sidekiq).
# Idempotent: does nothing when they are already there. The tests start their own private servers on free ports, so any system
# instance that Debian's maintainer scripts would start is kept from running.
#
# Usage: scripts/install-system-deps.sh          install what is missing (root), or say how
#        scripts/install-system-deps.sh --check  exit 0 if everything is present, 1 if not
set -euo pipefail

say() { printf 'system-deps: %s\n' "$*"; }

have_redis() { command -v redis-server >/dev/null 2>&1; }

# PostgreSQL server binaries: initdb, pg_ctl and postgres together, on PATH or in
# /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
have_postgres() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 \
        && command -v postgres >/dev/null 2>&1; then
        return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            return 0
        fi
    done
    return 1
}

have_chromium() { [[ -x /usr/bin/chromium ]]; }

have_wrk() { command -v wrk >/dev/null 2>&1; }

# The Ruby libraries the interop tests require, each checked by loading it.
RUBY_PACKAGES=(ruby ruby-activejob ruby-delayed-job-active-record ruby-sqlite3 ruby-pg ruby-sidekiq)
have_ruby() {
    command -v ruby >/dev/null 2>&1 && ruby -e '
        %w[active_job active_record delayed_job delayed_job_active_record sqlite3 pg sidekiq]
          .each { |lib| require lib }' >/dev/null 2>&1
}

have_postgres_user() { [[ $EUID -ne 0 ]] || id -u postgres >/dev/null 2>&1; }

if [[ ${1:-} == --check ]]; then
    have_redis && have_postgres && have_postgres_user && have_chromium && have_wrk && have_ruby
    exit
fi

packages=()
have_redis || packages+=(redis-server)
have_postgres || packages+=(postgresql)
have_chromium || packages+=(chromium fonts-dejavu-core)
have_wrk || packages+=(wrk)
have_ruby || packages+=("${RUBY_PACKAGES[@]}")

if [[ ${#packages[@]} -eq 0 ]]; then
    say "redis-server, PostgreSQL, chromium, wrk and Ruby already present; nothing to install"
else
    if [[ $EUID -ne 0 ]]; then
        say "missing: ${packages[*]}" >&2
        say "run as root:  apt-get update && apt-get install -y --no-install-recommends ${packages[*]}" >&2
        exit 1
    fi

    # Keep the packages' maintainer scripts from starting system services (a redis on 6379,
    # a PostgreSQL cluster on 5432): invoke-rc.d obeys /usr/sbin/policy-rc.d exiting 101.
    # An existing policy-rc.d (Docker images ship one) is left as it is.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from immortus scripts/install-system-deps.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi

    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
    say "apt-get update"
    apt-get "${apt_opts[@]}" -qq update
    say "apt-get install -y --no-install-recommends ${packages[*]}"
    apt-get "${apt_opts[@]}" -qq install -y --no-install-recommends "${packages[@]}" >/dev/null

    # Belt and braces: if a system redis was started anyway (no policy honoured, systemd), stop
    # it. Only the instance the package started, found through its own pid file.
    if [[ -f /run/redis/redis-server.pid ]]; then
        pid=$(cat /run/redis/redis-server.pid)
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            say "stopping the system redis-server (pid $pid) that the package started"
            if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
                systemctl stop redis-server || true
                systemctl disable redis-server >/dev/null 2>&1 || true
            else
                kill "$pid" || true
            fi
        fi
    fi
    # The same for a PostgreSQL cluster the postgresql package created and may have started.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        while read -r version cluster _port status _rest; do
            if [[ $status == online* ]]; then
                say "stopping the system PostgreSQL cluster $version/$cluster that the package started"
                pg_ctlcluster "$version" "$cluster" stop || true
            fi
        done < <(pg_lsclusters --no-header 2>/dev/null || true)
    fi

    have_redis || { say "redis-server still missing after apt-get install" >&2; exit 1; }
    have_postgres || { say "PostgreSQL server binaries still missing after apt-get install" >&2; exit 1; }
    have_chromium || { say "/usr/bin/chromium still missing after apt-get install" >&2; exit 1; }
    have_wrk || { say "wrk still missing after apt-get install" >&2; exit 1; }
    have_ruby || { say "Ruby or one of its libraries still missing after apt-get install" >&2; exit 1; }
    say "installed: ${packages[*]}"
fi

# As root the tests run PostgreSQL as the 'postgres' OS user (it refuses to run as root).
# The postgresql package creates that user; a machine with the binaries but without it gets one.
if ! have_postgres_user; then
    say "creating the 'postgres' system user (PostgreSQL will not run as root)"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

say "redis-server: $(command -v redis-server) ($(redis-server --version | awk '{sub("v=", "", $3); print $3}'))"
