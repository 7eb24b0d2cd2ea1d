#!/usr/bin/env bash
# Refresh the vendored browser libraries from npm, at the exact versions in package.json.
# Run it after changing a version there; commit the files it writes (and package-lock.json).
# The exported page loads only these files, so it works with no network at all.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$work/"
[ -f "$here/package-lock.json" ] && cp "$here/package-lock.json" "$work/"
(cd "$work" && npm install --no-audit --no-fund --ignore-scripts --save-exact >/dev/null)
m="$work/node_modules"
# onnxruntime-web: the WebAssembly backend only (no WebGPU/WebGL), its glue bundled into one module.
cp "$m/onnxruntime-web/dist/ort.wasm.bundle.min.mjs" "$here/ort.wasm.bundle.min.mjs"
cp "$m/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm" "$here/ort-wasm-simd-threaded.wasm"
# (MIT; the package ships no LICENSE file, the notice is at the top of the .mjs)
cp "$m/@huggingface/tokenizers/dist/tokenizers.min.mjs" "$here/tokenizers.min.mjs"
cp "$m/@huggingface/tokenizers/LICENSE" "$here/LICENSE.tokenizers"
cp "$m/@huggingface/jinja/dist/index.js" "$here/jinja.mjs"  # the package ships no minified build
cp "$m/@huggingface/jinja/LICENSE" "$here/LICENSE.jinja"
cp "$work/package-lock.json" "$here/package-lock.json"
ls -l "$here"
