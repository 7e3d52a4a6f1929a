#!/usr/bin/env bash
# Builds the three flavours of the component into target/wasm/:
#   bridge-spin.wasm            Spin 3.2+ (Spin variables; state through wasi:keyvalue, atomic claim)
#   bridge-spin-noatomics.wasm  Spin hosts without wasi:keyvalue atomics (Spin 2.x-3.0, Akamai
#                               Functions): state through fermyon:spin/key-value
#   bridge-wasi.wasm            portable flavour (environment variables, no state store)
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

mkdir -p target/wasm
build() {
  cargo build --locked --target wasm32-wasip2 --release -p tv-kraken-bridge "$@"
}
build
cp target/wasm32-wasip2/release/tv_kraken_bridge.wasm target/wasm/bridge-spin.wasm
build --features host-spin-noatomics
cp target/wasm32-wasip2/release/tv_kraken_bridge.wasm target/wasm/bridge-spin-noatomics.wasm
build --no-default-features --features host-wasi
cp target/wasm32-wasip2/release/tv_kraken_bridge.wasm target/wasm/bridge-wasi.wasm
ls -l target/wasm/*.wasm
