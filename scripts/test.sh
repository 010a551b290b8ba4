#!/usr/bin/env bash
# The test command (README): installs dependencies, makes sure the local Postgres and NATS answer,
# builds, lints, and runs every jest test (unit, then integration against the real services).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_postgres() {
  if port_open 5432; then return; fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do port_open 5432 && return; sleep 1; done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1
}

ensure_nats() {
  if port_open 4222; then return; fi
  log "starting nats-server"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 30); do port_open 4222 && return; sleep 1; done
  echo "nats-server did not start on 127.0.0.1:4222" >&2; exit 1
}

ensure_bubblewrap() {
  # The agent's command-job sandbox (commands.sandbox) is tested with the real tool.
  if command -v bwrap >/dev/null; then return; fi
  log "installing bubblewrap"
  apt-get install -y -qq bubblewrap >/dev/null || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; }
}

log "installing dependencies"
# onnxruntime-node (later issues) must not fetch CUDA files at install. `npm install`, not `npm ci`:
# with this machine's npm setting omit-lockfile-registry-resolved, npm 11 writes lock entries for
# other platforms' optional binaries (@swc/core-darwin-*, …) that `npm ci` then calls missing.
ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --loglevel=error

ensure_postgres
ensure_nats
ensure_bubblewrap

log "building"
npm run build --silent

log "linting"
npx eslint . --max-warnings=0
npx prettier --check . --log-level warn

mkdir -p .tmp
jest() { node --experimental-vm-modules node_modules/jest/bin/jest.js "$@"; }
status=0
# The idle-detection test waits for whole minutes of telemetry (1-2 min, little CPU): it runs beside
# the unit tests, with a nats-server of its own, and its output is shown after theirs.
# --forceExit: a failed test must not leave jest waiting on a child process's pipes (the harness
# kills every process it started when jest exits).
WALL_CLOCK_TESTS='idle-cancel\.e2e'
jest --selectProjects integration --ci --runInBand --forceExit --testPathPatterns "$WALL_CLOCK_TESTS" \
  --json --outputFile=.tmp/jest-wall-clock.json >.tmp/jest-wall-clock.log 2>&1 &
wall_clock=$!
log "unit tests"
jest --selectProjects unit --ci --json --outputFile=.tmp/jest-unit.json || status=$?
log "idle detection end to end (run beside the unit tests)"
wait "$wall_clock" || status=$?
cat .tmp/jest-wall-clock.log
log "integration and end-to-end tests (real Postgres, nats-server, control plane and agent processes)"
# Two files at a time: they spend about half their time waiting (leases, heartbeats, processes
# starting), and each jest worker has a nats-server of its own (integration.global-setup.mjs).
jest --selectProjects integration --ci --maxWorkers=2 --forceExit --testPathIgnorePatterns "$WALL_CLOCK_TESTS" \
  --json --outputFile=.tmp/jest-integration.json || status=$?

# One closing line for both runs, in the plain form CI reads.
node -e '
  const files = [".tmp/jest-unit.json", ".tmp/jest-wall-clock.json", ".tmp/jest-integration.json"];
  let passed = 0, failed = 0, skipped = 0;
  for (const f of files) {
    try { const r = require("./" + f); passed += r.numPassedTests; failed += r.numFailedTests; skipped += r.numPendingTests + r.numTodoTests; }
    catch { failed += 1; console.error("no results in " + f); }
  }
  console.log(`\njest: ${passed} passed, ${failed} failed, ${skipped} skipped`);
'
exit "$status"
