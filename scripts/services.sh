#!/usr/bin/env bash
# Makes sure the services the tests talk to are running on this machine: Postgres (trust auth
# for local TCP), Redis, NATS with JetStream and ClickHouse, all from Debian's packages; and that the
# browser tests have Chromium and Node.js (Debian's too) and their npm packages. Idempotent: a
# service that already answers is left alone. Exits non-zero when one cannot be had.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 150); do
    port_open "$port" && return 0
    sleep 0.2
  done
  log "$what did not start listening on 127.0.0.1:$port"
  return 1
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    # Another apt (a benchmark's peers, unattended upgrades) may hold the lock: wait for it.
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    apt_updated=1
  fi
  log "installing $*"
  # dpkg's progress lines are noise in a test log; they are shown when the install fails.
  local out
  if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    log "could not install $*"
    return 1
  fi
}

ensure_postgres() {
  if ! port_open 5432; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Tests connect as postgres over TCP without a password, as on the CI machines.
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port 5432 Postgres
  fi
  log "postgres ok"
}

ensure_redis() {
  if ! port_open 6379; then
    command -v redis-server >/dev/null || apt_install redis-server
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 Redis
  fi
  log "redis ok"
}

ensure_nats() {
  # The outage tests run a private nats-server of their own, so the binary must be here too.
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  if ! port_open 4222; then
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    wait_port 4222 NATS
  fi
  log "nats ok"
}

http_answers() { curl -sf --max-time 2 "$1" >/dev/null 2>&1; }

ensure_clickhouse() {
  # The outage tests run a private clickhouse-server of their own, so the binary must be here too.
  if ! command -v clickhouse-server >/dev/null && [ ! -x /usr/sbin/clickhouse-server ]; then
    apt_install clickhouse-server clickhouse-client
  fi
  local ping='http://127.0.0.1:8123/?query=SELECT%201'
  if ! http_answers "$ping"; then
    # The package's start script is blocked in containers: start the server directly.
    mkdir -p /var/lib/clickhouse /var/log/clickhouse-server
    setsid clickhouse-server --config-file=/etc/clickhouse-server/config.xml >/dev/null 2>&1 &
    for _ in $(seq 1 150); do
      http_answers "$ping" && break
      sleep 0.2
    done
    if ! http_answers "$ping"; then
      log "ClickHouse did not answer on http://127.0.0.1:8123 (see /var/log/clickhouse-server/)"
      return 1
    fi
  fi
  log "clickhouse ok"
}

ensure_chromium() {
  # Debian's build: a test tool's own browser download cannot reach its servers from here.
  [ -x /usr/bin/chromium ] || apt_install chromium
  log "chromium ok"
}

ensure_node() {
  command -v node >/dev/null || apt_install nodejs
  command -v npm >/dev/null || apt_install npm
  log "node ok"
}

# `npm ci` from the committed lock file, skipped while node_modules matches that lock file.
npm_ci() {
  local dir=$1 stamp=$1/node_modules/.installed-from-lock
  local want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$stamp"
  fi
}

ensure_browser_tests() {
  npm_ci tests/browser
  log "browser test packages ok"
}

cd "$(dirname "$0")/.."
ensure_postgres
ensure_redis
ensure_nats
ensure_clickhouse
ensure_chromium
ensure_node
ensure_browser_tests
