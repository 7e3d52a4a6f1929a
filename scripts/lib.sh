# Shared helpers for the scripts; source it, do not run it.

WASMTIME_VERSION=48.0.8

# Puts cargo's bin directory on PATH (a fresh rustup install may not have done so).
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

ensure_wasm_target() {
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
}

# Installs the wasmtime CLI when it is missing or another version (about 12 minutes on 2 cores).
ensure_wasmtime() {
  if command -v wasmtime >/dev/null 2>&1 && wasmtime --version | grep -q " $WASMTIME_VERSION"; then
    return 0
  fi
  echo "installing wasmtime-cli $WASMTIME_VERSION (one time, about 12 minutes on 2 cores)..." >&2
  cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked
}
