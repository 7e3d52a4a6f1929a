//! Test host for the bridge component (`wasi:http/incoming-handler@0.2.0`).
//!
//! Two ways to run the component built by `scripts/build.sh`:
//!
//! * [`SpinHost`]: an embedded wasmtime 48 host that emulates Spin for the
//!   Spin flavour (`fermyon:spin/variables@2.0.0`, `fermyon:spin/key-value@2.0.0`,
//!   `wasi:keyvalue@0.2.0-draft2` store/atomics/batch, `allowed_outbound_hosts`,
//!   the `spin-*` request headers, a fresh instance per request). Guest
//!   stdout/stderr and outbound HTTP requests are captured per request. Its
//!   key-value store, [`KeyValueStore`], has Spin's SQLite semantics in memory
//!   or drives a real Redis server (see [`RedisServer`]) as Spin's Redis
//!   backend does, can be shared by several hosts (a fleet), and has fault
//!   switches and operation counters.
//! * [`ServeHost`]: the real `wasmtime serve -Scli` CLI for the portable
//!   flavour, settings passed as inherited environment variables.
//!
//! Plus a world check ([`check_world`]) comparing a component's imports with
//! the worlds in the repository's `wit/` directory.
//!
//! ```no_run
//! use bridge_host::{Flavour, SpinHost, wasm_path};
//!
//! let host = SpinHost::builder(wasm_path(Flavour::Spin))
//!     .variable("kraken_base_url", "http://127.0.0.1:18081")
//!     .allow_outbound("http://127.0.0.1:18081")
//!     .build();
//! let req = http::Request::post("/webhook")
//!     .body(bytes::Bytes::from_static(b"{}"))
//!     .unwrap();
//! let ex = host.handle_blocking(req);
//! assert_eq!(ex.status, 401, "{ex}");
//! ```

mod allowed_hosts;
mod engine;
mod exchange;
mod kv;
mod receiver;
mod redis_server;
mod serve;
mod spin;
mod spin_cli;
mod world;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use allowed_hosts::AllowedHost;
pub use engine::{compiled_component, engine};
pub use exchange::{Exchange, OutboundRecord};
pub use kv::{
    Cas, DEFAULT_OP_DELAY, FAILING_MESSAGE, KEY_LIMIT_MESSAGE, KeyValueStore, KvError, OpCounts,
    SwapError,
};
pub use receiver::{Answer, Received, Receiver};
pub use redis_server::RedisServer;
pub use serve::{ServeHost, ServeHostBuilder, find_wasmtime_cli, wasmtime_cli};
pub use spin::{SpinHost, SpinHostBuilder};
pub use spin_cli::{SpinUp, http_request, spin_cli, spin_or_skip};
pub use world::{check_world, component_imports, world_imports};

/// The three builds of the component (see `scripts/build.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// `target/wasm/bridge-spin.wasm`: world `bridge-spin` (Spin variables,
    /// `wasi:keyvalue` store and atomics).
    Spin,
    /// `target/wasm/bridge-spin-noatomics.wasm`: world `bridge-spin-noatomics`
    /// (Spin variables and `fermyon:spin/key-value`), for hosts without atomics.
    SpinNoAtomics,
    /// `target/wasm/bridge-wasi.wasm`: world `bridge-wasi` (environment
    /// variables), for `wasmtime serve -Scli`.
    Wasi,
}

impl Flavour {
    /// File name under `target/wasm/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Flavour::Spin => "bridge-spin.wasm",
            Flavour::SpinNoAtomics => "bridge-spin-noatomics.wasm",
            Flavour::Wasi => "bridge-wasi.wasm",
        }
    }

    /// Name of the world in `wit/world.wit` this flavour targets.
    pub fn world(self) -> &'static str {
        match self {
            Flavour::Spin => "bridge-spin",
            Flavour::SpinNoAtomics => "bridge-spin-noatomics",
            Flavour::Wasi => "bridge-wasi",
        }
    }
}

/// Root of the Cargo workspace (the repository root).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Path of the built component for `flavour`.
///
/// # Panics
///
/// If the file does not exist, with a hint to run `scripts/build.sh`.
pub fn wasm_path(flavour: Flavour) -> PathBuf {
    let path = workspace_root()
        .join("target/wasm")
        .join(flavour.file_name());
    assert!(
        path.is_file(),
        "component {} not found: run scripts/build.sh first",
        path.display()
    );
    path
}

/// Process-wide multi-threaded tokio runtime used by the `*_blocking` helpers.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("bridge-host")
            .build()
            .expect("failed to build the tokio runtime")
    })
}
