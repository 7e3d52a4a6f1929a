#!/usr/bin/env bash
# Builds both flavours of the component into target/wasm/:
#   bridge-spin.wasm  Spin flavour (Spin variables, Spin key-value)
#   bridge-wasi.wasm  portable flavour (environment variables, no state store)
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

mkdir -p target/wasm
cargo build --locked --target wasm32-wasip2 --release -p tv-kraken-bridge
cp target/wasm32-wasip2/release/tv_kraken_bridge.wasm target/wasm/bridge-spin.wasm
cargo build --locked --target wasm32-wasip2 --release -p tv-kraken-bridge \
  --no-default-features --features host-wasi
cp target/wasm32-wasip2/release/tv_kraken_bridge.wasm target/wasm/bridge-wasi.wasm
ls -l target/wasm/*.wasm
