#!/usr/bin/env bash
# Builds the page into dist/assets: static/ as is, src/page/ bundled by esbuild into app.js.
# Type checking is `make worker-lint`'s job (tsc -p tsconfig.page.json); this only bundles.
# Skips the build when nothing changed since the last one, so a second `wrangler dev` (tests
# beside `swarm up`) does not pull the files from under a running one.
set -euo pipefail
worker="$(cd "$(dirname "$0")/.." && pwd)"
out="$worker/dist/assets"
stamp="$worker/dist/.built"
if [ -f "$stamp" ] && [ -z "$(find "$worker/static" "$worker/src/page" "$worker/src/shared" "$worker/src/gen" \
     "$0" -newer "$stamp" -print -quit)" ]; then
  exit 0
fi
mkdir -p "$worker/dist"
next="$(mktemp -d "$worker/dist/next.XXXXXX")"
cp -R "$worker/static/." "$next/"
"$worker/node_modules/.bin/esbuild" "$worker/src/page/main.ts" \
  --bundle --format=esm --target=es2022 --platform=browser \
  --sourcemap --legal-comments=none --log-level=warning \
  --outfile="$next/app.js"
rm -rf "$out"
mv "$next" "$out"
touch "$stamp"
