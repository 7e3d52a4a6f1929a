//! [`KeyValueStore`]: the key-value store behind the emulated Spin host, with
//! the semantics of Spin v4.0.2's two local backends, fault switches and
//! operation counters.
//!
//! Backends:
//!
//! * **memory** ([`KeyValueStore::new`]): what `spin up` uses by default, a
//!   SQLite table (crate `spin-key-value-spin`). Every operation runs under
//!   one lock, as Spin's operations run under its one SQLite connection.
//!   Counters are 8 little-endian bytes of an `i64`. A compare-and-swap whose
//!   `current` saw a value is `UPDATE ... WHERE value = <that value>`; one
//!   whose `current` saw no value (or that never called `current`) is an
//!   unconditional upsert, so two of those both succeed: Spin's behaviour,
//!   reproduced on purpose.
//! * **redis** ([`KeyValueStore::redis`]): a real Redis server, driven with
//!   the commands of Spin's `spin-key-value-redis` (`GET`, `SET`, `DEL`,
//!   `EXISTS`, `KEYS *`, `INCRBY`; compare-and-swap is `WATCH` + `GET` in
//!   `current` and `MULTI`/`SET`/`EXEC` in `swap`, on a connection of its
//!   own). Counters are decimal text.
//!
//! The async methods (`*_async`, [`increment`](KeyValueStore::increment),
//! [`cas`](KeyValueStore::cas)) are the path the component's host calls take:
//! each one is counted ([`ops`](KeyValueStore::ops)), yields to the tokio
//! scheduler and waits a random delay of at most
//! [`set_op_delay`](KeyValueStore::set_op_delay) (so concurrent requests
//! interleave as on Spin, whose key-value host calls are async), then applies
//! the faults ([`set_stall`](KeyValueStore::set_stall),
//! [`set_failing`](KeyValueStore::set_failing),
//! [`set_key_limit`](KeyValueStore::set_key_limit)) before touching the data.
//! The blocking methods ([`get`](KeyValueStore::get),
//! [`set`](KeyValueStore::set), ...) are for tests to seed and inspect the
//! data: they bypass faults, delays and counters.
//!
//! Clones share everything: data, faults and counters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, Value};
use anyhow::Context as _;

/// Default of [`KeyValueStore::set_op_delay`].
pub const DEFAULT_OP_DELAY: Duration = Duration::from_micros(250);

/// Message of the error every operation returns while
/// [`KeyValueStore::set_failing`] is on.
pub const FAILING_MESSAGE: &str = "emulated key-value store failure";

/// Message of the error of a write that would exceed
/// [`KeyValueStore::set_key_limit`].
pub const KEY_LIMIT_MESSAGE: &str = "key limit reached";

/// An error of a key-value operation: what Spin reports as `error::other`
/// (the text is free-form, as in Spin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError(pub String);

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KvError {}

/// Spin formats backend errors with `{:?}` (`spin_factor_key_value::log_error`).
fn backend_error(e: impl fmt::Debug) -> KvError {
    KvError(format!("{e:?}"))
}

/// Why [`Cas::swap`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapError {
    /// The value changed since [`Cas::current`] (wasi:keyvalue `cas-failed`).
    CasFailed(String),
    /// The store failed (wasi:keyvalue `store-error(other(..))`).
    Store(KvError),
}

impl fmt::Display for SwapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapError::CasFailed(reason) => write!(f, "compare-and-swap failed: {reason}"),
            SwapError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SwapError {}

impl From<KvError> for SwapError {
    fn from(e: KvError) -> Self {
        SwapError::Store(e)
    }
}

/// Operations attempted through the async API (the component's path), per
/// kind, including those that failed. Batch operations count once each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// `get` (both interfaces).
    pub gets: u64,
    /// `set` (both interfaces).
    pub sets: u64,
    /// `delete` (both interfaces).
    pub deletes: u64,
    /// `exists` (both interfaces).
    pub exists: u64,
    /// `get-keys` / `list-keys`.
    pub list_keys: u64,
    /// `atomics.increment`.
    pub increments: u64,
    /// `cas.new` (`atomics`), including the fresh handle a failed swap returns.
    pub cas_news: u64,
    /// `cas.current`.
    pub cas_currents: u64,
    /// `atomics.swap`.
    pub cas_swaps: u64,
    /// `batch.get-many`.
    pub get_manys: u64,
    /// `batch.set-many`.
    pub set_manys: u64,
    /// `batch.delete-many`.
    pub delete_manys: u64,
}

#[derive(Default)]
struct Counters {
    gets: AtomicU64,
    sets: AtomicU64,
    deletes: AtomicU64,
    exists: AtomicU64,
    list_keys: AtomicU64,
    increments: AtomicU64,
    cas_news: AtomicU64,
    cas_currents: AtomicU64,
    cas_swaps: AtomicU64,
    get_manys: AtomicU64,
    set_manys: AtomicU64,
    delete_manys: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> OpCounts {
        let load = |c: &AtomicU64| c.load(Ordering::SeqCst);
        OpCounts {
            gets: load(&self.gets),
            sets: load(&self.sets),
            deletes: load(&self.deletes),
            exists: load(&self.exists),
            list_keys: load(&self.list_keys),
            increments: load(&self.increments),
            cas_news: load(&self.cas_news),
            cas_currents: load(&self.cas_currents),
            cas_swaps: load(&self.cas_swaps),
            get_manys: load(&self.get_manys),
            set_manys: load(&self.set_manys),
            delete_manys: load(&self.delete_manys),
        }
    }

    fn reset(&self) {
        for c in [
            &self.gets,
            &self.sets,
            &self.deletes,
            &self.exists,
            &self.list_keys,
            &self.increments,
            &self.cas_news,
            &self.cas_currents,
            &self.cas_swaps,
            &self.get_manys,
            &self.set_manys,
            &self.delete_manys,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }
}

/// Run-time switches, see the `set_*` methods of [`KeyValueStore`].
struct Faults {
    failing: AtomicBool,
    stall: Mutex<Option<Duration>>,
    write_stall: Mutex<Option<Duration>>,
    key_limit: Mutex<Option<usize>>,
    op_delay: Mutex<Duration>,
    cas_abort_reported_as_success: AtomicBool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            failing: AtomicBool::new(false),
            stall: Mutex::new(None),
            write_stall: Mutex::new(None),
            key_limit: Mutex::new(None),
            op_delay: Mutex::new(DEFAULT_OP_DELAY),
            cas_abort_reported_as_success: AtomicBool::new(false),
        }
    }
}

struct Inner {
    backend: Backend,
    faults: Faults,
    counts: Counters,
}

enum Backend {
    /// Spin's default SQLite store: one table, one lock.
    Memory(Mutex<BTreeMap<String, Vec<u8>>>),
    Redis(Box<RedisBackend>),
}

/// Connections to a Redis server.
struct RedisBackend {
    url: String,
    client: Client,
    /// Shared by all operations (Spin shares one `ConnectionManager`),
    /// created on the crate's runtime on first use.
    conn: tokio::sync::OnceCell<MultiplexedConnection>,
    /// Blocking connection of the inspection helpers.
    sync_conn: Mutex<Option<::redis::Connection>>,
}

/// The `default` key-value store of one or more [`SpinHost`](crate::SpinHost)s;
/// see the [module docs](self). Clones share the data, the faults and the
/// counters, so hosts built with clones of one store form a fleet sharing it.
#[derive(Clone)]
pub struct KeyValueStore(Arc<Inner>);

impl Default for KeyValueStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeyValueStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.0.backend {
            Backend::Memory(_) => "memory".to_string(),
            Backend::Redis(r) => format!("redis {}", r.url),
        };
        f.debug_struct("KeyValueStore")
            .field("backend", &backend)
            .field("ops", &self.ops())
            .finish_non_exhaustive()
    }
}

impl From<BTreeMap<String, Vec<u8>>> for KeyValueStore {
    /// A memory store holding `map`.
    fn from(map: BTreeMap<String, Vec<u8>>) -> Self {
        Self::with_backend(Backend::Memory(Mutex::new(map)))
    }
}

/// A compare-and-swap in progress (wasi:keyvalue `atomics.cas`), from
/// [`KeyValueStore::cas`].
pub struct Cas {
    store: KeyValueStore,
    key: String,
    state: CasState,
}

enum CasState {
    /// What the last `current` saw (`None` also when it was never called).
    Memory { seen: Option<Vec<u8>> },
    /// The CAS's own connection (Redis scopes `WATCH` to a connection).
    Redis { conn: MultiplexedConnection },
}

impl fmt::Debug for Cas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cas")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl KeyValueStore {
    /// An empty memory store (Spin's default SQLite store).
    pub fn new() -> Self {
        Self::from(BTreeMap::new())
    }

    /// A store on the Redis server at `url` (`redis://127.0.0.1:6379`), as
    /// Spin's `type = "redis"` runtime config. Connects once (blocking) to
    /// check the server answers. The data is the server's database: other
    /// clients, and other `KeyValueStore`s on the same URL, share it.
    pub fn redis(url: &str) -> anyhow::Result<Self> {
        let client = Client::open(url).with_context(|| format!("invalid Redis URL {url:?}"))?;
        let mut sync = client
            .get_connection()
            .with_context(|| format!("cannot connect to Redis at {url}"))?;
        ::redis::cmd("PING")
            .query::<String>(&mut sync)
            .with_context(|| format!("Redis at {url} does not answer PING"))?;
        Ok(Self::with_backend(Backend::Redis(Box::new(RedisBackend {
            url: url.to_string(),
            client,
            conn: tokio::sync::OnceCell::new(),
            sync_conn: Mutex::new(Some(sync)),
        }))))
    }

    fn with_backend(backend: Backend) -> Self {
        Self(Arc::new(Inner {
            backend,
            faults: Faults::default(),
            counts: Counters::default(),
        }))
    }

    /// Whether this is a Redis store.
    pub fn is_redis(&self) -> bool {
        matches!(self.0.backend, Backend::Redis(_))
    }

    // ----- faults -----------------------------------------------------------

    /// While on, every operation of the component (both interfaces, every
    /// kind but `open`) fails with `other("emulated key-value store
    /// failure")`, after its delay and stall.
    pub fn set_failing(&self, failing: bool) {
        self.0.faults.failing.store(failing, Ordering::SeqCst);
    }

    /// While `Some(d)`, every operation of the component waits `d` before it
    /// answers (a store that stopped answering; `d` is read when the
    /// operation starts).
    pub fn set_stall(&self, stall: Option<Duration>) {
        *self.0.faults.stall.lock().unwrap() = stall;
    }

    /// Like [`set_stall`](Self::set_stall), for `set` (and `set-many`) only: reads,
    /// counters and swaps answer at once, and a set lands after the stall, long after a
    /// caller with a deadline has given up on it.
    pub fn set_set_stall(&self, stall: Option<Duration>) {
        *self.0.faults.write_stall.lock().unwrap() = stall;
    }

    /// While `Some(n)`, a write that would create a key when the store already
    /// holds `n` keys fails with `other("key limit reached")` (Fermyon
    /// Cloud's cap is 1,024 keys). Applies to `set`, `set-many`, `increment`
    /// and a `swap` that creates its key; overwriting an existing key is
    /// always allowed. On Redis the check and the write are two commands.
    pub fn set_key_limit(&self, limit: Option<usize>) {
        *self.0.faults.key_limit.lock().unwrap() = limit;
    }

    /// Maximum of the random delay every operation of the component waits
    /// (after yielding to the scheduler) before touching the data.
    /// Default [`DEFAULT_OP_DELAY`]; `Duration::ZERO` leaves only the yield.
    pub fn set_op_delay(&self, max: Duration) {
        *self.0.faults.op_delay.lock().unwrap() = max;
    }

    /// Redis only. When on, a `swap` whose `EXEC` the server aborted (the
    /// key changed after `current`'s `WATCH`) returns success without having
    /// written anything, which is what Spin v4.0.2 does (it reads the `EXEC`
    /// reply as `()`, which accepts the nil of an aborted transaction). Off
    /// by default: the aborted swap is `cas-failed`.
    pub fn set_cas_abort_reported_as_success(&self, on: bool) {
        self.0
            .faults
            .cas_abort_reported_as_success
            .store(on, Ordering::SeqCst);
    }

    /// Operations the component attempted so far.
    pub fn ops(&self) -> OpCounts {
        self.0.counts.snapshot()
    }

    /// Zero the operation counters.
    pub fn reset_ops(&self) {
        self.0.counts.reset();
    }

    // ----- blocking inspection helpers (no faults, delays or counters) -----

    /// Value of `key`.
    ///
    /// # Panics
    ///
    /// If Redis fails (also for the other helpers).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match &self.0.backend {
            Backend::Memory(map) => map.lock().unwrap().get(key).cloned(),
            Backend::Redis(r) => r.sync(|c| ::redis::cmd("GET").arg(key).query(c)),
        }
    }

    /// Set `key` to `value`.
    pub fn set(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        match &self.0.backend {
            Backend::Memory(map) => {
                map.lock().unwrap().insert(key, value);
            }
            Backend::Redis(r) => r.sync(|c| ::redis::cmd("SET").arg(&key).arg(&value).exec(c)),
        }
    }

    /// Remove `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> bool {
        match &self.0.backend {
            Backend::Memory(map) => map.lock().unwrap().remove(key).is_some(),
            Backend::Redis(r) => r.sync(|c| ::redis::cmd("DEL").arg(key).query::<u64>(c)) > 0,
        }
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        match &self.0.backend {
            Backend::Memory(map) => map.lock().unwrap().keys().cloned().collect(),
            Backend::Redis(r) => {
                let mut keys: Vec<String> = r.sync(|c| ::redis::cmd("KEYS").arg("*").query(c));
                keys.sort();
                keys
            }
        }
    }

    /// Copy of the whole store.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        match &self.0.backend {
            Backend::Memory(map) => map.lock().unwrap().clone(),
            Backend::Redis(r) => r.sync(|c| {
                let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query(c)?;
                if keys.is_empty() {
                    return Ok(BTreeMap::new());
                }
                let values: Vec<Option<Vec<u8>>> = ::redis::cmd("MGET").arg(&keys).query(c)?;
                Ok(keys
                    .into_iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect())
            }),
        }
    }

    /// Remove everything (`FLUSHDB` on Redis).
    pub fn clear(&self) {
        match &self.0.backend {
            Backend::Memory(map) => map.lock().unwrap().clear(),
            Backend::Redis(r) => r.sync(|c| ::redis::cmd("FLUSHDB").exec(c)),
        }
    }

    // ----- the component's path ---------------------------------------------

    /// Count, interleave, stall and fail as configured; `Ok` when the
    /// operation may go on.
    async fn begin(&self, counter: impl Fn(&Counters) -> &AtomicU64) -> Result<(), KvError> {
        let c = &self.0.counts;
        let this = counter(c);
        this.fetch_add(1, Ordering::SeqCst);
        let writes = [&c.sets, &c.set_manys];
        let write_stall = *self.0.faults.write_stall.lock().unwrap();
        if let Some(stall) = write_stall.filter(|_| writes.iter().any(|w| std::ptr::eq(*w, this))) {
            tokio::time::sleep(stall).await;
        }
        tokio::task::yield_now().await;
        let max = *self.0.faults.op_delay.lock().unwrap();
        let delay = random_delay(max);
        if delay >= Duration::from_millis(1) {
            tokio::time::sleep(delay).await;
        } else if !delay.is_zero() {
            // tokio's timer has a 1 ms resolution: yield until the delay has
            // passed instead.
            let until = Instant::now() + delay;
            while Instant::now() < until {
                tokio::task::yield_now().await;
            }
        }
        let stall = *self.0.faults.stall.lock().unwrap();
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        if self.0.faults.failing.load(Ordering::SeqCst) {
            return Err(KvError(FAILING_MESSAGE.to_string()));
        }
        Ok(())
    }

    fn key_limit(&self) -> Option<usize> {
        *self.0.faults.key_limit.lock().unwrap()
    }

    /// Memory backend: `Ok` when writing `keys` (those not in `map` are
    /// new) stays within the key limit.
    fn check_limit_memory(
        &self,
        map: &BTreeMap<String, Vec<u8>>,
        keys: &[&str],
    ) -> Result<(), KvError> {
        let Some(limit) = self.key_limit() else {
            return Ok(());
        };
        let mut new: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| !map.contains_key(*k))
            .collect();
        new.sort_unstable();
        new.dedup();
        if !new.is_empty() && map.len() + new.len() > limit {
            return Err(KvError(KEY_LIMIT_MESSAGE.to_string()));
        }
        Ok(())
    }

    /// Redis backend: the same check, with `EXISTS` and `DBSIZE` before the
    /// write.
    async fn check_limit_redis(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &[&str],
    ) -> Result<(), KvError> {
        let Some(limit) = self.key_limit() else {
            return Ok(());
        };
        let mut new = 0;
        let mut distinct: Vec<&str> = keys.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for key in distinct {
            let exists: bool = ::redis::cmd("EXISTS")
                .arg(key)
                .query_async(conn)
                .await
                .map_err(backend_error)?;
            new += usize::from(!exists);
        }
        if new == 0 {
            return Ok(());
        }
        let size: usize = ::redis::cmd("DBSIZE")
            .query_async(conn)
            .await
            .map_err(backend_error)?;
        if size + new > limit {
            return Err(KvError(KEY_LIMIT_MESSAGE.to_string()));
        }
        Ok(())
    }

    /// `get`: the value of `key`, `None` when absent.
    pub async fn get_async(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.begin(|c| &c.gets).await?;
        match &self.0.backend {
            Backend::Memory(map) => Ok(map.lock().unwrap().get(key).cloned()),
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                ::redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
        }
    }

    /// `set`: insert or overwrite `key`.
    pub async fn set_async(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.begin(|c| &c.sets).await?;
        match &self.0.backend {
            Backend::Memory(map) => {
                let mut map = map.lock().unwrap();
                self.check_limit_memory(&map, &[key])?;
                map.insert(key.to_string(), value.to_vec());
                Ok(())
            }
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                self.check_limit_redis(&mut conn, &[key]).await?;
                ::redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .exec_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
        }
    }

    /// `delete`: remove `key` (absent is fine).
    pub async fn delete_async(&self, key: &str) -> Result<(), KvError> {
        self.begin(|c| &c.deletes).await?;
        match &self.0.backend {
            Backend::Memory(map) => {
                map.lock().unwrap().remove(key);
                Ok(())
            }
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                ::redis::cmd("DEL")
                    .arg(key)
                    .exec_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
        }
    }

    /// `exists`.
    pub async fn exists_async(&self, key: &str) -> Result<bool, KvError> {
        self.begin(|c| &c.exists).await?;
        match &self.0.backend {
            Backend::Memory(map) => Ok(map.lock().unwrap().contains_key(key)),
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                ::redis::cmd("EXISTS")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
        }
    }

    /// `get-keys` / `list-keys`: every key (memory: sorted, as SQLite's
    /// primary-key order; Redis: `KEYS *` order).
    pub async fn list_keys_async(&self) -> Result<Vec<String>, KvError> {
        self.begin(|c| &c.list_keys).await?;
        match &self.0.backend {
            Backend::Memory(map) => Ok(map.lock().unwrap().keys().cloned().collect()),
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                ::redis::cmd("KEYS")
                    .arg("*")
                    .query_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
        }
    }

    /// `batch.get-many`, as Spin does it. Memory: SQLite's `key IN (...)`
    /// query, which returns only the keys present (each once, sorted), never
    /// a `(key, None)` pair. Redis: Spin v4.0.2 sends `KEYS <key> <key>...`
    /// and reads the reply as pairs, which fails for more than one key and
    /// for any present key; this sends the same command.
    pub async fn get_many_async(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, KvError> {
        self.begin(|c| &c.get_manys).await?;
        match &self.0.backend {
            Backend::Memory(map) => {
                let map = map.lock().unwrap();
                let mut keys = keys;
                keys.sort();
                keys.dedup();
                Ok(keys
                    .into_iter()
                    .filter_map(|k| {
                        let v = map.get(&k)?.clone();
                        Some((k, Some(v)))
                    })
                    .collect())
            }
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                ::redis::cmd("KEYS")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
        }
    }

    /// `batch.set-many` (memory: one transaction; Redis: `MSET`).
    pub async fn set_many_async(&self, key_values: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        self.begin(|c| &c.set_manys).await?;
        let keys: Vec<&str> = key_values.iter().map(|(k, _)| k.as_str()).collect();
        match &self.0.backend {
            Backend::Memory(map) => {
                let mut map = map.lock().unwrap();
                self.check_limit_memory(&map, &keys)?;
                map.extend(key_values.iter().cloned());
                Ok(())
            }
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                self.check_limit_redis(&mut conn, &keys).await?;
                let mut cmd = ::redis::cmd("MSET");
                for (k, v) in &key_values {
                    cmd.arg(k).arg(v);
                }
                cmd.exec_async(&mut conn).await.map_err(backend_error)
            }
        }
    }

    /// `batch.delete-many` (Redis: `DEL k1 k2 ...`).
    pub async fn delete_many_async(&self, keys: Vec<String>) -> Result<(), KvError> {
        self.begin(|c| &c.delete_manys).await?;
        match &self.0.backend {
            Backend::Memory(map) => {
                let mut map = map.lock().unwrap();
                for k in &keys {
                    map.remove(k);
                }
                Ok(())
            }
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                ::redis::cmd("DEL")
                    .arg(&keys)
                    .exec_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
        }
    }

    /// `atomics.increment`: atomically add `delta` to the counter at `key`
    /// (absent: 0) and return the new value. Memory: the counter is 8
    /// little-endian bytes, and a value of another length is an error
    /// (Spin v4.0.2 panics there: `expect("incorrect length")`). Redis:
    /// `INCRBY`, decimal text.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.begin(|c| &c.increments).await?;
        match &self.0.backend {
            Backend::Memory(map) => {
                let mut map = map.lock().unwrap();
                let current = match map.get(key) {
                    None => 0,
                    Some(v) => i64::from_le_bytes(v.as_slice().try_into().map_err(|_| {
                        KvError(format!(
                            "incorrect length: {key:?} holds {} bytes, not the 8 of a counter",
                            v.len()
                        ))
                    })?),
                };
                self.check_limit_memory(&map, &[key])?;
                let new = current.wrapping_add(delta);
                map.insert(key.to_string(), new.to_le_bytes().to_vec());
                Ok(new)
            }
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                self.check_limit_redis(&mut conn, &[key]).await?;
                ::redis::cmd("INCRBY")
                    .arg(key)
                    .arg(delta)
                    .query_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
        }
    }

    /// `cas.new`: start a compare-and-swap on `key`. Redis: opens the CAS's
    /// own connection, as Spin does.
    pub async fn cas(&self, key: &str) -> Result<Cas, KvError> {
        self.begin(|c| &c.cas_news).await?;
        let state = match &self.0.backend {
            Backend::Memory(_) => CasState::Memory { seen: None },
            Backend::Redis(r) => CasState::Redis {
                conn: r.connect().await?,
            },
        };
        Ok(Cas {
            store: self.clone(),
            key: key.to_string(),
            state,
        })
    }
}

impl Cas {
    /// The key this CAS is on.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `cas.current`: the value of the key now. Memory: remembered for
    /// [`swap`](Self::swap). Redis: `WATCH key` then `GET key`.
    pub async fn current(&mut self) -> Result<Option<Vec<u8>>, KvError> {
        self.store.begin(|c| &c.cas_currents).await?;
        match (&self.store.0.backend, &mut self.state) {
            (Backend::Memory(map), CasState::Memory { seen }) => {
                let value = map.lock().unwrap().get(&self.key).cloned();
                seen.clone_from(&value);
                Ok(value)
            }
            (Backend::Redis(_), CasState::Redis { conn }) => {
                ::redis::cmd("WATCH")
                    .arg(&self.key)
                    .exec_async(conn)
                    .await
                    .map_err(backend_error)?;
                ::redis::cmd("GET")
                    .arg(&self.key)
                    .query_async(conn)
                    .await
                    .map_err(backend_error)
            }
            _ => unreachable!("CAS state of another backend"),
        }
    }

    /// `atomics.swap`: write `value` if the key has not changed since
    /// [`current`](Self::current).
    ///
    /// Memory (Spin's SQLite): when `current` saw a value, `UPDATE ... WHERE
    /// value = <it>`, `CasFailed` when no row matched (changed or deleted);
    /// when `current` saw no value or was never called, an unconditional
    /// upsert that always succeeds, however many swaps race. Redis:
    /// `MULTI`/`SET`/`EXEC` on the CAS's connection, so it fails (see
    /// [`KeyValueStore::set_cas_abort_reported_as_success`]) when the key
    /// changed after `current`'s `WATCH`, absent keys included; without
    /// `current` there is no `WATCH` and it always succeeds.
    pub async fn swap(mut self, value: Vec<u8>) -> Result<(), SwapError> {
        let store = self.store.clone();
        store.begin(|c| &c.cas_swaps).await?;
        match (&store.0.backend, &mut self.state) {
            (Backend::Memory(map), CasState::Memory { seen }) => {
                let mut map = map.lock().unwrap();
                match seen {
                    Some(old) => match map.get_mut(&self.key) {
                        Some(v) if v == old => {
                            *v = value;
                            Ok(())
                        }
                        _ => Err(SwapError::CasFailed("failed to update 1 row".to_string())),
                    },
                    None => {
                        store.check_limit_memory(&map, &[&self.key])?;
                        map.insert(self.key.clone(), value);
                        Ok(())
                    }
                }
            }
            (Backend::Redis(r), CasState::Redis { conn }) => {
                let mut shared = r.conn().await?;
                store.check_limit_redis(&mut shared, &[&self.key]).await?;
                let reply: Result<Value, _> = ::redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&self.key)
                    .arg(value)
                    .query_async(conn)
                    .await;
                ::redis::cmd("UNWATCH")
                    .exec_async(conn)
                    .await
                    .map_err(|e| SwapError::CasFailed(format!("{e:?}")))?;
                match reply {
                    Ok(Value::Nil)
                        if !store
                            .0
                            .faults
                            .cas_abort_reported_as_success
                            .load(Ordering::SeqCst) =>
                    {
                        Err(SwapError::CasFailed(
                            "EXEC aborted: the key changed after WATCH".to_string(),
                        ))
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(SwapError::CasFailed(format!("{e:?}"))),
                }
            }
            _ => unreachable!("CAS state of another backend"),
        }
    }
}

impl RedisBackend {
    /// The shared async connection.
    async fn conn(&self) -> Result<MultiplexedConnection, KvError> {
        self.conn.get_or_try_init(|| self.connect()).await.cloned()
    }

    /// A new async connection. It is opened on the crate's process-wide
    /// runtime, which runs its driver task, so it keeps working whichever
    /// runtime the caller is on and after that runtime shuts down. No
    /// timeouts, like Spin's.
    async fn connect(&self) -> Result<MultiplexedConnection, KvError> {
        let client = self.client.clone();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        crate::runtime()
            .spawn(async move {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            })
            .await
            .map_err(backend_error)?
            .map_err(backend_error)
    }

    /// Run `f` on the blocking connection, reconnecting once after an error.
    fn sync<T>(&self, f: impl Fn(&mut ::redis::Connection) -> ::redis::RedisResult<T>) -> T {
        let mut slot = self.sync_conn.lock().unwrap();
        let mut last_error = None;
        for _ in 0..2 {
            if slot.is_none() {
                match self.client.get_connection() {
                    Ok(c) => *slot = Some(c),
                    Err(e) => {
                        last_error = Some(e);
                        continue;
                    }
                }
            }
            match f(slot.as_mut().unwrap()) {
                Ok(v) => return v,
                Err(e) => {
                    *slot = None;
                    last_error = Some(e);
                }
            }
        }
        panic!("Redis at {}: {:?}", self.url, last_error.unwrap());
    }
}

/// A uniformly random duration in `[0, max]`.
fn random_delay(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(fastrand::u64(0..=nanos))
}
