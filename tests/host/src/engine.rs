//! Process-wide wasmtime [`Engine`] and compiled-[`Component`] cache.
//!
//! Compiling a component with Cranelift takes seconds, so every component
//! file is compiled at most once per test process (per path, size and mtime).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// The shared engine (default configuration; async host calls are always
/// available in wasmtime 48).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(&Config::new()).expect("failed to create wasmtime engine"))
}

/// Cache key of a component file: canonical path, size and mtime.
pub(crate) type Key = (PathBuf, u64, Option<SystemTime>);
type Slot = Arc<OnceLock<Result<Component, String>>>;

pub(crate) fn cache_key(path: &Path) -> anyhow::Result<Key> {
    let canonical = path
        .canonicalize()
        .with_context(|| format!("component {} not found", path.display()))?;
    let meta = std::fs::metadata(&canonical)?;
    Ok((canonical, meta.len(), meta.modified().ok()))
}

/// Compile (once per process) and return the component at `path`.
pub fn compiled_component(path: impl AsRef<Path>) -> anyhow::Result<Component> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Slot>>> = OnceLock::new();
    let path = path.as_ref();
    let key = cache_key(path)?;
    let slot = {
        let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
        cache.entry(key).or_default().clone()
    };
    // Compile outside the map lock, so different components compile in
    // parallel while callers of the same one wait for the first compilation.
    slot.get_or_init(|| {
        let started = Instant::now();
        let component = Component::from_file(engine(), path)
            .map_err(|e| format!("failed to compile {}: {e:?}", path.display()))?;
        eprintln!(
            "[bridge-host] compiled {} in {:.2?}",
            path.display(),
            started.elapsed()
        );
        Ok(component)
    })
    .clone()
    .map_err(anyhow::Error::msg)
}
