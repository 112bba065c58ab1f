#!/usr/bin/env bash
# Builds the page into dist/assets: static/ as is, src/page/ bundled by esbuild into app.js.
# Type checking is `make worker-lint`'s job (tsc -p tsconfig.page.json); this only bundles.
set -euo pipefail
worker="$(cd "$(dirname "$0")/.." && pwd)"
out="$worker/dist/assets"
rm -rf "$out"
mkdir -p "$out"
cp -R "$worker/static/." "$out/"
"$worker/node_modules/.bin/esbuild" "$worker/src/page/main.ts" \
  --bundle --format=esm --target=es2022 --platform=browser \
  --sourcemap --legal-comments=none --log-level=warning \
  --outfile="$out/app.js"
