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

# Installs Debian packages with apt-get, through `sudo -n` when not root. The output goes to
# $APT_LOG when set (scripts/bench keeps it quiet), else to the terminal. Returns non-zero
# when apt-get is missing, sudo is needed but unavailable, or the install fails.
apt_updated=
apt_install() { # packages...
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || return 1
    sudo="sudo -n"
  fi
  echo "installing $* with apt-get..." >&2
  local log=${APT_LOG:-/dev/stderr}
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -q >>"$log" 2>&1 || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@" >>"$log" 2>&1
}

# Puts a real Spin on PATH for the Spin-gated tests and the benchmark: the `spin` already on
# PATH, else the copy beside the repository (../shared/tools/spin, which unpacks itself once
# and needs xz) when there is one. Without either, those tests skip with a message.
ensure_spin_on_path() {
  if command -v spin >/dev/null 2>&1; then
    return 0
  fi
  local beside
  beside="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/tools/spin"
  if [ -x "$beside/spin" ]; then
    command -v xz >/dev/null 2>&1 || apt_install xz-utils || true
    export PATH="$(cd "$beside" && pwd):$PATH"
  fi
}
