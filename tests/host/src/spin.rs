//! [`SpinHost`]: an embedded wasmtime 48 host that runs the Spin flavour the
//! way `spin up` (Spin v4.0.2, WASIp2 HTTP trigger) does.
//!
//! What is emulated:
//!
//! * a fresh `Store` and instance per request, guest stdout/stderr captured
//!   per request;
//! * `fermyon:spin/variables@2.0.0` from a fixed map (names validated like
//!   Spin; an unknown name is `error::undefined`);
//! * one key-value store, [`KeyValueStore`], shared by all requests of a host
//!   (and by every host built with a clone of it), reached through two
//!   interfaces, as on Spin:
//!   * `fermyon:spin/key-value@2.0.0` (label `default`; a label the
//!     component was not granted is `access-denied`, a granted label other
//!     than `default` is `no-such-store`);
//!   * `wasi:keyvalue@0.2.0-draft2` interfaces `store`, `atomics` and
//!     `batch` (`open` has the same label rules, mapped to the wasi
//!     `error` variant; `list-keys` with a cursor is an `other` error;
//!     `increment`, compare-and-swap and the batch operations behave as the
//!     store's backend does on Spin, see [`KeyValueStore`]);
//!
//!   both interfaces' host functions are async and every store operation
//!   yields to the scheduler and waits a small random delay first, so the
//!   operations of concurrent requests interleave as on Spin; open stores
//!   and buckets share Spin's table of 256 per instance, compare-and-swap
//!   handles have their own 256 (and, as in Spin, a handle consumed by
//!   `swap` keeps its slot until the instance ends);
//! * `allowed_outbound_hosts`: requests to any other origin fail with
//!   `error-code::HTTP-request-denied` before anything is sent; allowed ones go
//!   to the real network through wasmtime-wasi-http's default sender;
//! * the `spin-*` request headers (`spin-full-url`, `spin-path-info`,
//!   `spin-matched-route`, `spin-base-path`, `spin-raw-component-route`,
//!   `spin-component-route`, `spin-client-addr`), overwriting client-sent ones;
//! * the route: requests outside it get 404 without running the guest;
//! * service chaining to the app's store component (`bridge-store`, as in the
//!   repository's `spin.toml`): the same component with `bridge_role = "store"`,
//!   granted the same store, reached at `http://bridge-store.spin.internal`, each
//!   request a fresh instance in a task of its own that runs on when the caller
//!   stops waiting (Spin 4.0.2: a chained request is not bound to its caller).
//!   Calls to it are not listed in [`Exchange::outbound`].

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::allowed_hosts::AllowedHost;
use crate::engine::{Key, cache_key, compiled_component, engine};
use crate::exchange::{Exchange, OutboundRecord};
use crate::kv::{Cas, KeyValueStore, KvError, SwapError};

mod bindings {
    //! Host side of the Spin and wasi:keyvalue interfaces, generated from the
    //! repository's `wit/`.
    wasmtime::component::bindgen!({
        path: "../../wit",
        interfaces: "
            import fermyon:spin/variables@2.0.0;
            import fermyon:spin/key-value@2.0.0;
            import wasi:keyvalue/store@0.2.0-draft2;
            import wasi:keyvalue/atomics@0.2.0-draft2;
            import wasi:keyvalue/batch@0.2.0-draft2;
        ",
        imports: {
            "fermyon:spin/key-value": async,
            "wasi:keyvalue": async,
        },
        with: {
            "fermyon:spin/key-value.store": super::OpenStore,
            "wasi:keyvalue/store.bucket": super::OpenBucket,
            "wasi:keyvalue/atomics.cas": super::CasHandle,
        },
    });
}

use bindings::fermyon::spin::{key_value, variables};
use bindings::wasi::keyvalue::{atomics, batch, store as wasi_store};

/// Capacity of each captured stdio stream per request.
const STDIO_CAPACITY: usize = 4 << 20;
/// Spin's limit of simultaneously open key-value stores per instance
/// (`fermyon:spin/key-value` stores and `wasi:keyvalue` buckets together).
const STORE_TABLE_CAPACITY: usize = 256;
/// Spin's limit of compare-and-swap handles per instance.
const CAS_TABLE_CAPACITY: usize = 256;
/// The only store the emulated runtime defines.
const DEFAULT_STORE: &str = "default";

/// Resource behind `fermyon:spin/key-value.store`.
#[doc(hidden)]
pub struct OpenStore;

/// Resource behind `wasi:keyvalue/store.bucket` (always the `default` store).
#[doc(hidden)]
pub struct OpenBucket;

/// Resource behind `wasi:keyvalue/atomics.cas`.
#[doc(hidden)]
pub struct CasHandle(Cas);

/// Configuration shared by all requests of one host.
#[derive(Debug)]
struct Config {
    component_id: String,
    variables: BTreeMap<String, String>,
    key_value_stores: Vec<String>,
    kv: KeyValueStore,
    allowed_outbound_hosts: Vec<AllowedHost>,
    client_addr: Option<String>,
    route: Route,
    env: Vec<(String, String)>,
    timeout: Duration,
    /// The app's store component, reached by service chaining.
    store_component: Option<Arc<SpinHost>>,
}

/// The store component's id in the repository's `spin.toml`.
pub const STORE_COMPONENT: &str = "bridge-store";
/// The origin the bridge reaches it at.
const STORE_ORIGIN: &str = "http://bridge-store.spin.internal";

/// Spin route of the component: exact (`/webhook`) or wildcard (`/webhook/...`).
#[derive(Debug, Clone)]
struct Route {
    raw: String,
    /// Prefix for wildcard routes (`""` for `/...`), `None` for exact routes.
    wildcard_prefix: Option<String>,
}

impl Route {
    fn parse(raw: &str) -> anyhow::Result<Self> {
        if !raw.starts_with('/') {
            bail!("route {raw:?} must start with '/'");
        }
        let wildcard_prefix = raw
            .strip_suffix("/...")
            .map(|prefix| prefix.trim_end_matches('/').to_string());
        Ok(Self {
            raw: raw.to_string(),
            wildcard_prefix,
        })
    }

    /// Path info (`spin-path-info`) if `path` matches this route.
    fn path_info(&self, path: &str) -> Option<String> {
        match &self.wildcard_prefix {
            Some(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then(|| rest.to_string())
            }
            None => {
                (path.trim_end_matches('/') == self.raw.trim_end_matches('/')).then(String::new)
            }
        }
    }

    /// `spin-component-route`: the route without the trailing `/...`.
    fn component_route(&self) -> &str {
        self.wildcard_prefix.as_deref().unwrap_or(&self.raw)
    }
}

/// Builder for [`SpinHost`]; see the setter docs for defaults.
#[derive(Debug, Clone)]
pub struct SpinHostBuilder {
    wasm: PathBuf,
    component_id: String,
    variables: BTreeMap<String, String>,
    key_value_stores: Vec<String>,
    kv: KeyValueStore,
    allowed_outbound_hosts: Vec<String>,
    client_addr: Option<String>,
    route: String,
    env: Vec<(String, String)>,
    timeout: Duration,
    store_component: bool,
}

impl SpinHostBuilder {
    /// An app without the store component (a manifest written before it existed): the
    /// bridge's chained store calls are refused, and it calls the store itself.
    /// Default: the store component is there, as in the repository's `spin.toml`.
    pub fn without_store_component(mut self) -> Self {
        self.store_component = false;
        self
    }

    /// Set Spin variable `name` (as `[component.x.variables]` would).
    pub fn variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.insert(name.into(), value.into());
        self
    }

    /// Set several Spin variables.
    pub fn variables<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.variables
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Use `store` as the `default` key-value store (to pre-seed it or share it
    /// between hosts). Default: a new empty store, see [`SpinHost::kv`].
    pub fn kv_store(mut self, store: KeyValueStore) -> Self {
        self.kv = store;
        self
    }

    /// The component's `key_value_stores` list. Default `["default"]`; pass an
    /// empty list to emulate a component without key-value access.
    pub fn key_value_stores<S: Into<String>>(
        mut self,
        labels: impl IntoIterator<Item = S>,
    ) -> Self {
        self.key_value_stores = labels.into_iter().map(Into::into).collect();
        self
    }

    /// Add one `allowed_outbound_hosts` entry, e.g. `http://127.0.0.1:18081`.
    /// Default: none (all outbound HTTP denied, as in Spin).
    pub fn allow_outbound(mut self, origin: impl Into<String>) -> Self {
        self.allowed_outbound_hosts.push(origin.into());
        self
    }

    /// Replace the `allowed_outbound_hosts` list.
    pub fn allowed_outbound_hosts<S: Into<String>>(
        mut self,
        origins: impl IntoIterator<Item = S>,
    ) -> Self {
        self.allowed_outbound_hosts = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Value the host puts in `spin-client-addr` (overwriting any value the
    /// client sent). Default `Some("127.0.0.1:50000")`. `None` emulates a Spin
    /// runtime that does not set the header: client-sent values pass through.
    pub fn client_addr(mut self, addr: Option<impl Into<String>>) -> Self {
        self.client_addr = addr.map(Into::into);
        self
    }

    /// The component's HTTP route. Default `/...` (everything).
    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = route.into();
        self
    }

    /// Component id used in Spin's error messages. Default `tv-kraken`.
    pub fn component_id(mut self, id: impl Into<String>) -> Self {
        self.component_id = id.into();
        self
    }

    /// WASI environment variable for the guest (Spin's component
    /// `environment` table). Default: none.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Per-request limit; exceeding it panics with the output so far.
    /// Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Validate the configuration, compile (or reuse) the component and
    /// pre-instantiate it.
    pub fn try_build(self) -> anyhow::Result<SpinHost> {
        for name in self.variables.keys() {
            validate_variable_name(name)
                .map_err(|reason| anyhow::anyhow!("invalid variable name {name:?}: {reason}"))?;
        }
        let mut allowed_outbound_hosts = self
            .allowed_outbound_hosts
            .iter()
            .map(|h| {
                AllowedHost::parse(h).with_context(|| format!("allowed_outbound_hosts entry {h:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pre = proxy_pre(&self.wasm)?;
        let store_component = if self.store_component {
            allowed_outbound_hosts.push(AllowedHost::parse(STORE_ORIGIN)?);
            Some(Arc::new(SpinHost {
                pre: pre.clone(),
                config: Arc::new(Config {
                    component_id: STORE_COMPONENT.into(),
                    variables: [("bridge_role".to_string(), "store".to_string())].into(),
                    key_value_stores: self.key_value_stores.clone(),
                    kv: self.kv.clone(),
                    allowed_outbound_hosts: Vec::new(),
                    client_addr: None,
                    route: Route::parse("/...")?,
                    env: Vec::new(),
                    // A store call that hangs holds this instance as long as Spin would.
                    timeout: Duration::from_secs(3_600),
                    store_component: None,
                }),
            }))
        } else {
            None
        };
        Ok(SpinHost {
            pre,
            config: Arc::new(Config {
                component_id: self.component_id,
                variables: self.variables,
                key_value_stores: self.key_value_stores,
                kv: self.kv,
                allowed_outbound_hosts,
                client_addr: self.client_addr,
                route: Route::parse(&self.route)?,
                env: self.env,
                timeout: self.timeout,
                store_component,
            }),
        })
    }

    /// [`try_build`](Self::try_build), panicking on error.
    pub fn build(self) -> SpinHost {
        let wasm = self.wasm.clone();
        self.try_build()
            .unwrap_or_else(|e| panic!("SpinHost for {}: {e:?}", wasm.display()))
    }
}

/// Spin's variable-name rules (lower-case letters, digits, single underscores;
/// starts with a letter, ends with a letter or digit).
fn validate_variable_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("must not be empty".to_string())
    } else if let Some(invalid) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        Err(format!(
            "invalid character {invalid:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        ))
    } else if !name.as_bytes()[0].is_ascii_lowercase() {
        Err("must start with a lowercase ASCII letter".to_string())
    } else if !name.as_bytes()[name.len() - 1].is_ascii_alphanumeric() {
        Err("must end with a lowercase ASCII letter or digit".to_string())
    } else if name.contains("__") {
        Err("must not contain multiple consecutive underscores".to_string())
    } else {
        Ok(())
    }
}

/// Linker + pre-instantiation, cached per component like the compilation.
fn proxy_pre(wasm: &Path) -> anyhow::Result<ProxyPre<HostState>> {
    type Slot = Arc<OnceLock<Result<ProxyPre<HostState>, String>>>;
    static CACHE: OnceLock<Mutex<HashMap<Key, Slot>>> = OnceLock::new();
    let component = compiled_component(wasm)?;
    let key = cache_key(wasm)?;
    let slot = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(key)
        .or_default()
        .clone();
    let build = || -> anyhow::Result<ProxyPre<HostState>> {
        let mut linker = Linker::<HostState>::new(engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        variables::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        key_value::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        wasi_store::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        atomics::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        batch::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("component imports something the Spin host does not provide")?;
        Ok(ProxyPre::new(pre)?)
    };
    let pre = slot.get_or_init(|| build().map_err(|e| format!("{e:?}")));
    pre.clone().map_err(anyhow::Error::msg)
}

/// Embedded Spin emulation; cheap to clone, safe to use from many tasks at
/// once (each request gets its own `Store` and instance).
#[derive(Clone)]
pub struct SpinHost {
    pre: ProxyPre<HostState>,
    config: Arc<Config>,
}

impl std::fmt::Debug for SpinHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpinHost")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SpinHost {
    /// Start configuring a host for the component at `wasm`.
    pub fn builder(wasm: impl Into<PathBuf>) -> SpinHostBuilder {
        SpinHostBuilder {
            wasm: wasm.into(),
            component_id: "tv-kraken".to_string(),
            variables: BTreeMap::new(),
            key_value_stores: vec![DEFAULT_STORE.to_string()],
            kv: KeyValueStore::new(),
            allowed_outbound_hosts: Vec::new(),
            client_addr: Some("127.0.0.1:50000".to_string()),
            route: "/...".to_string(),
            env: Vec::new(),
            timeout: Duration::from_secs(30),
            store_component: true,
        }
    }

    /// The shared `default` key-value store (inspect or seed it from tests).
    pub fn kv(&self) -> &KeyValueStore {
        &self.config.kv
    }

    /// Handle one request on a fresh instance.
    ///
    /// The request URI may be relative (`/webhook?x=1`); the `host` header
    /// (default `localhost:3000`, as `spin up` listens) provides the
    /// authority then.
    pub async fn handle(&self, req: http::Request<Bytes>) -> Exchange {
        let timeout = self.config.timeout;
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        let outbound = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let run = self.run(req, stdout.clone(), stderr.clone(), outbound.clone());
        let result = tokio::time::timeout(timeout, run).await;
        let ended = started.elapsed();
        let stdout = String::from_utf8_lossy(&stdout.contents()).into_owned();
        let stderr = String::from_utf8_lossy(&stderr.contents()).into_owned();
        let outbound = outbound.lock().unwrap().clone();
        let Ok(result) = result else {
            panic!(
                "request did not complete within {timeout:?}\n--- guest stdout ---\n{stdout}\n--- guest stderr ---\n{stderr}\noutbound: {outbound:#?}"
            );
        };
        let (status, headers, body, error, answered) = match result {
            Ok(Response::Guest(resp)) => (
                resp.status,
                resp.headers,
                resp.body,
                resp.error,
                resp.answered,
            ),
            Ok(Response::NotFound) => (404, HeaderMap::new(), Bytes::new(), None, None),
            Err(e) => (
                500,
                HeaderMap::new(),
                Bytes::new(),
                Some(format!("{e:?}")),
                None,
            ),
        };
        let elapsed = answered.map_or(ended, |at| at.duration_since(started));
        Exchange {
            status,
            headers,
            body,
            stdout,
            stderr,
            elapsed,
            instance_ended: Some(ended),
            outbound,
            error,
        }
    }

    /// [`handle`](Self::handle) on the crate's shared runtime, for plain
    /// `#[test]`s. Must not be called from inside an async runtime.
    pub fn handle_blocking(&self, req: http::Request<Bytes>) -> Exchange {
        crate::runtime().block_on(self.handle(req))
    }

    async fn run(
        &self,
        req: http::Request<Bytes>,
        stdout: MemoryOutputPipe,
        stderr: MemoryOutputPipe,
        outbound: Arc<Mutex<Vec<OutboundRecord>>>,
    ) -> anyhow::Result<Response> {
        let config = &self.config;
        let (mut parts, body) = req.into_parts();
        let Some(path_info) = config.route.path_info(parts.uri.path()) else {
            return Ok(Response::NotFound);
        };
        let host = match parts.uri.authority() {
            Some(authority) => authority.to_string(),
            None => parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost:3000")
                .to_string(),
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        parts.uri = format!("http://{host}{path_and_query}")
            .parse()
            .context("request URI")?;
        if !parts.headers.contains_key(http::header::HOST) {
            parts
                .headers
                .insert(http::header::HOST, HeaderValue::from_str(&host)?);
        }
        let mut spin_headers = vec![
            ("spin-path-info", path_info),
            ("spin-full-url", format!("http://{host}{path_and_query}")),
            ("spin-matched-route", config.route.raw.clone()),
            ("spin-base-path", "/".to_string()),
            ("spin-raw-component-route", config.route.raw.clone()),
            (
                "spin-component-route",
                config.route.component_route().to_string(),
            ),
        ];
        if let Some(addr) = &config.client_addr {
            spin_headers.push(("spin-client-addr", addr.clone()));
        }
        for (name, value) in spin_headers {
            parts.headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value)?,
            );
        }
        let req = http::Request::from_parts(parts, Full::new(body));

        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout).stderr(stderr);
        for (name, value) in &config.env {
            wasi.env(name, value);
        }
        let state = HostState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                allowed: config.allowed_outbound_hosts.clone().into(),
                records: outbound,
                store_component: config.store_component.clone(),
            },
            config: config.clone(),
            open_stores: 0,
            open_cas: 0,
        };
        let mut store = Store::new(engine(), state);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await
        });

        let response = match receiver.await {
            Ok(Ok(resp)) => {
                let (parts, body) = resp.into_parts();
                // Collect while the guest may still be streaming the body.
                let body = body.collect().await.map(|c| c.to_bytes());
                Some((parts, body, Instant::now()))
            }
            Ok(Err(code)) => bail!("guest set an error response: {code:?}"),
            Err(_) => None,
        };
        // The guest may keep running after sending the response; wait so its
        // output is complete.
        let outcome = match task.await {
            Ok(Ok(())) => None,
            Ok(Err(trap)) => Some(format!("{trap:?}")),
            Err(join) => Some(format!("guest task failed: {join}")),
        };
        match response {
            Some((parts, Ok(body), at)) => Ok(Response::Guest(GuestResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
                error: outcome,
                answered: Some(at),
            })),
            Some((_, Err(e), at)) => Ok(Response::Guest(GuestResponse {
                status: 500,
                headers: HeaderMap::new(),
                body: Bytes::new(),
                error: Some(format!("response body failed: {e:?}; {outcome:?}")),
                answered: Some(at),
            })),
            None => {
                Ok(Response::Guest(GuestResponse {
                    status: 500,
                    headers: HeaderMap::new(),
                    body: Bytes::new(),
                    error: Some(outcome.unwrap_or_else(|| {
                        "guest never invoked `response-outparam::set`".to_string()
                    })),
                    answered: None,
                }))
            }
        }
    }
}

enum Response {
    Guest(GuestResponse),
    NotFound,
}

struct GuestResponse {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    error: Option<String>,
    /// When the full response body had arrived.
    answered: Option<Instant>,
}

/// Per-request store data.
struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    config: Arc<Config>,
    /// Open `fermyon:spin/key-value` stores and `wasi:keyvalue` buckets.
    open_stores: usize,
    /// Compare-and-swap handles counted against Spin's table: decremented
    /// only when the guest drops one, never when `swap` consumes it.
    open_cas: usize,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl variables::Host for HostState {
    fn get(&mut self, name: String) -> Result<String, variables::Error> {
        validate_variable_name(&name)
            .map_err(|reason| variables::Error::InvalidName(format!("{name:?}: {reason}")))?;
        self.config.variables.get(&name).cloned().ok_or_else(|| {
            variables::Error::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.config.component_id
            ))
        })
    }
}

impl HostState {
    /// The shared store.
    fn kv(&self) -> KeyValueStore {
        self.config.kv.clone()
    }

    /// Spin's `open` checks, common to both interfaces: `Ok(())` when the
    /// component may open `label` and the table has room.
    fn check_open(&self, label: &str) -> Result<(), key_value::Error> {
        if !self.config.key_value_stores.iter().any(|l| l == label) {
            return Err(key_value::Error::AccessDenied);
        }
        if label != DEFAULT_STORE {
            return Err(key_value::Error::NoSuchStore);
        }
        if self.open_stores >= STORE_TABLE_CAPACITY {
            return Err(key_value::Error::StoreTableFull);
        }
        Ok(())
    }

    /// `cas.new` on the default store: a handle in the table, counted
    /// against Spin's limit.
    async fn new_cas(&mut self, key: String) -> Result<Resource<CasHandle>, wasi_store::Error> {
        let cas = self.kv().cas(&key).await.map_err(wasi_error)?;
        if self.open_cas >= CAS_TABLE_CAPACITY {
            return Err(wasi_store::Error::Other(
                "too many compare_and_swaps opened".to_string(),
            ));
        }
        let handle = self
            .table
            .push(CasHandle(cas))
            .map_err(|e| wasi_store::Error::Other(e.to_string()))?;
        self.open_cas += 1;
        Ok(handle)
    }

    /// Check that `bucket` is an open bucket of this instance.
    fn bucket(&self, bucket: &Resource<OpenBucket>) -> Result<(), wasi_store::Error> {
        self.table
            .get(bucket)
            .map(drop)
            .map_err(|_| wasi_store::Error::NoSuchStore)
    }
}

fn spin_error(e: KvError) -> key_value::Error {
    key_value::Error::Other(e.0)
}

fn wasi_error(e: KvError) -> wasi_store::Error {
    wasi_store::Error::Other(e.0)
}

impl key_value::Host for HostState {}

impl key_value::HostStore for HostState {
    async fn open(&mut self, label: String) -> Result<Resource<OpenStore>, key_value::Error> {
        self.check_open(&label)?;
        let handle = self
            .table
            .push(OpenStore)
            .map_err(|e| key_value::Error::Other(e.to_string()))?;
        self.open_stores += 1;
        Ok(handle)
    }

    async fn get(
        &mut self,
        _store: Resource<OpenStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, key_value::Error> {
        self.kv().get_async(&key).await.map_err(spin_error)
    }

    async fn set(
        &mut self,
        _store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), key_value::Error> {
        self.kv().set_async(&key, &value).await.map_err(spin_error)
    }

    async fn delete(
        &mut self,
        _store: Resource<OpenStore>,
        key: String,
    ) -> Result<(), key_value::Error> {
        self.kv().delete_async(&key).await.map_err(spin_error)
    }

    async fn exists(
        &mut self,
        _store: Resource<OpenStore>,
        key: String,
    ) -> Result<bool, key_value::Error> {
        self.kv().exists_async(&key).await.map_err(spin_error)
    }

    async fn get_keys(
        &mut self,
        _store: Resource<OpenStore>,
    ) -> Result<Vec<String>, key_value::Error> {
        self.kv().list_keys_async().await.map_err(spin_error)
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        self.open_stores = self.open_stores.saturating_sub(1);
        Ok(())
    }
}

impl wasi_store::Host for HostState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> Result<Resource<OpenBucket>, wasi_store::Error> {
        self.check_open(&identifier).map_err(|e| match e {
            key_value::Error::AccessDenied => wasi_store::Error::AccessDenied,
            key_value::Error::NoSuchStore => wasi_store::Error::NoSuchStore,
            // Spin: `store table full` becomes `other`.
            key_value::Error::StoreTableFull => {
                wasi_store::Error::Other("store table full".to_string())
            }
            key_value::Error::Other(msg) => wasi_store::Error::Other(msg),
        })?;
        let handle = self
            .table
            .push(OpenBucket)
            .map_err(|e| wasi_store::Error::Other(e.to_string()))?;
        self.open_stores += 1;
        Ok(handle)
    }
}

impl wasi_store::HostBucket for HostState {
    async fn get(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, wasi_store::Error> {
        self.bucket(&bucket)?;
        self.kv().get_async(&key).await.map_err(wasi_error)
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), wasi_store::Error> {
        self.bucket(&bucket)?;
        self.kv().set_async(&key, &value).await.map_err(wasi_error)
    }

    async fn delete(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Result<(), wasi_store::Error> {
        self.bucket(&bucket)?;
        self.kv().delete_async(&key).await.map_err(wasi_error)
    }

    async fn exists(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Result<bool, wasi_store::Error> {
        self.bucket(&bucket)?;
        self.kv().exists_async(&key).await.map_err(wasi_error)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<String>,
    ) -> Result<wasi_store::KeyResponse, wasi_store::Error> {
        if cursor.is_some() {
            return Err(wasi_store::Error::Other(
                "list_keys: cursor not supported".to_string(),
            ));
        }
        self.bucket(&bucket)?;
        let keys = self.kv().list_keys_async().await.map_err(wasi_error)?;
        Ok(wasi_store::KeyResponse { keys, cursor: None })
    }

    async fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.open_stores = self.open_stores.saturating_sub(1);
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, wasi_store::Error> {
        self.bucket(&bucket)?;
        self.kv().increment(&key, delta).await.map_err(wasi_error)
    }

    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> Result<(), atomics::CasError> {
        let store_error = |e: wasi_store::Error| atomics::CasError::StoreError(e);
        // The guest gave the handle up; Spin keeps its table slot taken
        // (`open_cas` stays as it is).
        let CasHandle(cas) = self
            .table
            .delete(cas)
            .map_err(|e| store_error(wasi_store::Error::Other(e.to_string())))?;
        let key = cas.key().to_string();
        match cas.swap(value).await {
            Ok(()) => Ok(()),
            Err(SwapError::Store(e)) => Err(store_error(wasi_error(e))),
            Err(SwapError::CasFailed(_)) => {
                // Spin hands back a fresh handle on which `current` already
                // ran.
                let fresh = self.new_cas(key).await.map_err(store_error)?;
                let CasHandle(cas) = self
                    .table
                    .get_mut(&fresh)
                    .map_err(|e| store_error(wasi_store::Error::Other(e.to_string())))?;
                cas.current()
                    .await
                    .map_err(|e| store_error(wasi_error(e)))?;
                Err(atomics::CasError::CasFailed(fresh))
            }
        }
    }
}

impl atomics::HostCas for HostState {
    async fn new(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Result<Resource<CasHandle>, wasi_store::Error> {
        self.bucket(&bucket)?;
        self.new_cas(key).await
    }

    async fn current(
        &mut self,
        cas: Resource<CasHandle>,
    ) -> Result<Option<Vec<u8>>, wasi_store::Error> {
        let CasHandle(cas) = self
            .table
            .get_mut(&cas)
            .map_err(|e| wasi_store::Error::Other(e.to_string()))?;
        cas.current().await.map_err(wasi_error)
    }

    async fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        self.open_cas = self.open_cas.saturating_sub(1);
        Ok(())
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, wasi_store::Error> {
        self.bucket(&bucket)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.kv().get_many_async(keys).await.map_err(wasi_error)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), wasi_store::Error> {
        self.bucket(&bucket)?;
        if key_values.is_empty() {
            return Ok(());
        }
        self.kv()
            .set_many_async(key_values)
            .await
            .map_err(wasi_error)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Result<(), wasi_store::Error> {
        self.bucket(&bucket)?;
        if keys.is_empty() {
            return Ok(());
        }
        self.kv().delete_many_async(keys).await.map_err(wasi_error)
    }
}

/// `allowed_outbound_hosts` enforcement and request recording.
#[derive(Clone)]
struct OutboundHooks {
    allowed: Arc<[AllowedHost]>,
    records: Arc<Mutex<Vec<OutboundRecord>>>,
    store_component: Option<Arc<SpinHost>>,
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> ResponseFuture {
        let hooks = self.clone();
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let allowed = hooks.allowed.iter().any(|h| h.allows(&parts.uri));
            let mut record = OutboundRecord {
                method: parts.method.clone(),
                uri: parts.uri.to_string(),
                headers: parts.headers.clone(),
                body: Bytes::new(),
                allowed,
                status: None,
            };
            if !allowed {
                // Spin refuses before reading the body or connecting.
                hooks.records.lock().unwrap().push(record);
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            if parts.uri.host() == Some("bridge-store.spin.internal") {
                let Some(store) = hooks.store_component.clone() else {
                    return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
                };
                let body = body.collect().await?.to_bytes();
                let request = http::Request::from_parts(parts, body);
                // A task of its own: it runs on if the caller stops waiting.
                let exchange = tokio::spawn(async move { store.handle(request).await })
                    .await
                    .map_err(|_| wasmtime_wasi_http::Error::InternalError(None))?;
                let mut response = http::Response::builder().status(exchange.status);
                for (name, value) in &exchange.headers {
                    response = response.header(name, value);
                }
                let response = response
                    .body(
                        Full::new(exchange.body)
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    )
                    .map_err(|_| wasmtime_wasi_http::Error::InternalError(None))?;
                let io: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                    Box::new(async { Ok(()) });
                return Ok((response, io));
            }
            let index = {
                let mut records = hooks.records.lock().unwrap();
                records.push(record.clone());
                records.len() - 1
            };
            let body = body.collect().await?.to_bytes();
            record.body = body.clone();
            hooks.records.lock().unwrap()[index] = record;
            let body = Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync();
            let request = http::Request::from_parts(parts, body);
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            hooks.records.lock().unwrap()[index].status = Some(response.status().as_u16());
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    //! The key-value host functions called directly, without a component.

    use super::*;
    use crate::kv::FAILING_MESSAGE;

    /// Per-request state of a host granting `labels`, on `kv`.
    fn state(kv: &KeyValueStore, labels: &[&str]) -> HostState {
        let config = Config {
            component_id: "test".to_string(),
            variables: BTreeMap::new(),
            key_value_stores: labels.iter().map(|l| l.to_string()).collect(),
            kv: kv.clone(),
            allowed_outbound_hosts: Vec::new(),
            client_addr: None,
            route: Route::parse("/...").unwrap(),
            env: Vec::new(),
            timeout: Duration::from_secs(30),
            store_component: None,
        };
        HostState {
            table: ResourceTable::new(),
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                allowed: Vec::new().into(),
                records: Arc::default(),
                store_component: None,
            },
            config: Arc::new(config),
            open_stores: 0,
            open_cas: 0,
        }
    }

    /// A borrow of the resource behind `handle`, as the guest would pass it.
    fn borrow<T: 'static>(handle: &Resource<T>) -> Resource<T> {
        Resource::new_borrow(handle.rep())
    }

    async fn open_bucket(st: &mut HostState) -> Resource<OpenBucket> {
        wasi_store::Host::open(st, "default".to_string())
            .await
            .expect("open default")
    }

    #[tokio::test]
    async fn open_label_rules() {
        let kv = KeyValueStore::new();
        let mut st = state(&kv, &["default", "other"]);
        assert!(
            wasi_store::Host::open(&mut st, "default".into())
                .await
                .is_ok()
        );
        assert!(matches!(
            wasi_store::Host::open(&mut st, "other".into()).await,
            Err(wasi_store::Error::NoSuchStore)
        ));
        assert!(matches!(
            wasi_store::Host::open(&mut st, "secret".into()).await,
            Err(wasi_store::Error::AccessDenied)
        ));
        let mut st = state(&kv, &[]);
        assert!(matches!(
            wasi_store::Host::open(&mut st, "default".into()).await,
            Err(wasi_store::Error::AccessDenied)
        ));
        assert!(matches!(
            key_value::HostStore::open(&mut st, "default".into()).await,
            Err(key_value::Error::AccessDenied)
        ));
    }

    #[tokio::test]
    async fn both_interfaces_share_the_store() {
        let kv = KeyValueStore::new();
        let mut st = state(&kv, &["default"]);
        let store = key_value::HostStore::open(&mut st, "default".into())
            .await
            .unwrap();
        let bucket = open_bucket(&mut st).await;
        key_value::HostStore::set(&mut st, borrow(&store), "k".into(), b"spin".to_vec())
            .await
            .unwrap();
        let got = wasi_store::HostBucket::get(&mut st, borrow(&bucket), "k".into()).await;
        assert!(matches!(got, Ok(Some(v)) if v == b"spin"));
        let n = atomics::Host::increment(&mut st, borrow(&bucket), "n".into(), 3).await;
        assert!(matches!(n, Ok(3)));
        let got = key_value::HostStore::get(&mut st, borrow(&store), "n".into()).await;
        assert!(matches!(got, Ok(Some(v)) if v == 3i64.to_le_bytes()));
        assert_eq!(kv.keys(), ["k", "n"]);
        let listed = wasi_store::HostBucket::list_keys(&mut st, borrow(&bucket), None)
            .await
            .unwrap();
        assert_eq!(listed.keys, ["k", "n"]);
        assert_eq!(listed.cursor, None);
        let paged =
            wasi_store::HostBucket::list_keys(&mut st, borrow(&bucket), Some("x".into())).await;
        assert!(
            matches!(paged, Err(wasi_store::Error::Other(m)) if m == "list_keys: cursor not supported")
        );

        kv.set_failing(true);
        let failed = key_value::HostStore::get(&mut st, borrow(&store), "k".into()).await;
        assert!(matches!(failed, Err(key_value::Error::Other(m)) if m == FAILING_MESSAGE));
        let failed = wasi_store::HostBucket::get(&mut st, borrow(&bucket), "k".into()).await;
        assert!(matches!(failed, Err(wasi_store::Error::Other(m)) if m == FAILING_MESSAGE));
    }

    #[tokio::test]
    async fn failed_swap_returns_a_fresh_handle_with_current_read() {
        let kv = KeyValueStore::new();
        kv.set("k", "v0");
        let mut st = state(&kv, &["default"]);
        let bucket = open_bucket(&mut st).await;
        let cas = atomics::HostCas::new(&mut st, borrow(&bucket), "k".into())
            .await
            .unwrap();
        let current = atomics::HostCas::current(&mut st, borrow(&cas)).await;
        assert!(matches!(current, Ok(Some(v)) if v == b"v0"));
        kv.set("k", "v1");
        let fresh = match atomics::Host::swap(&mut st, cas, b"lost".to_vec()).await {
            Err(atomics::CasError::CasFailed(fresh)) => fresh,
            other => panic!("expected cas-failed, got {:?}", other.map_err(|_| ())),
        };
        assert_eq!(kv.get("k").as_deref(), Some(&b"v1"[..]));
        // `current` already ran on the fresh handle: it swaps from "v1".
        assert!(
            atomics::Host::swap(&mut st, fresh, b"v2".to_vec())
                .await
                .is_ok()
        );
        assert_eq!(kv.get("k").as_deref(), Some(&b"v2"[..]));
        assert_eq!(kv.ops().cas_news, 2);
        assert_eq!(kv.ops().cas_currents, 2);
        assert_eq!(kv.ops().cas_swaps, 2);
    }

    #[tokio::test]
    async fn swapped_cas_handles_keep_their_table_slot() {
        let kv = KeyValueStore::new();
        kv.set_op_delay(Duration::ZERO);
        let mut st = state(&kv, &["default"]);
        let bucket = open_bucket(&mut st).await;
        // Dropped handles free their slot...
        for _ in 0..CAS_TABLE_CAPACITY + 10 {
            let cas = atomics::HostCas::new(&mut st, borrow(&bucket), "k".into())
                .await
                .unwrap();
            atomics::HostCas::drop(&mut st, cas).await.unwrap();
        }
        // ... swapped ones do not, as in Spin.
        for _ in 0..CAS_TABLE_CAPACITY {
            let cas = atomics::HostCas::new(&mut st, borrow(&bucket), "k".into())
                .await
                .unwrap();
            assert!(
                atomics::Host::swap(&mut st, cas, b"v".to_vec())
                    .await
                    .is_ok()
            );
        }
        let full = atomics::HostCas::new(&mut st, borrow(&bucket), "k".into()).await;
        assert!(
            matches!(full, Err(wasi_store::Error::Other(m)) if m == "too many compare_and_swaps opened")
        );
    }

    #[tokio::test]
    async fn stores_and_buckets_share_the_table() {
        let kv = KeyValueStore::new();
        let mut st = state(&kv, &["default"]);
        for i in 0..STORE_TABLE_CAPACITY {
            if i % 2 == 0 {
                open_bucket(&mut st).await;
            } else {
                key_value::HostStore::open(&mut st, "default".into())
                    .await
                    .unwrap();
            }
        }
        assert!(matches!(
            key_value::HostStore::open(&mut st, "default".into()).await,
            Err(key_value::Error::StoreTableFull)
        ));
        assert!(matches!(
            wasi_store::Host::open(&mut st, "default".into()).await,
            Err(wasi_store::Error::Other(m)) if m == "store table full"
        ));
    }

    #[tokio::test]
    async fn empty_batches_do_not_reach_the_store() {
        let kv = KeyValueStore::new();
        kv.set_failing(true);
        let mut st = state(&kv, &["default"]);
        let bucket = open_bucket(&mut st).await;
        assert!(matches!(
            batch::Host::get_many(&mut st, borrow(&bucket), Vec::new()).await,
            Ok(v) if v.is_empty()
        ));
        assert!(
            batch::Host::set_many(&mut st, borrow(&bucket), Vec::new())
                .await
                .is_ok()
        );
        assert!(
            batch::Host::delete_many(&mut st, borrow(&bucket), Vec::new())
                .await
                .is_ok()
        );
        assert_eq!(kv.ops(), crate::OpCounts::default());
        kv.set_failing(false);
        batch::Host::set_many(&mut st, borrow(&bucket), vec![("a".into(), b"1".to_vec())])
            .await
            .unwrap();
        let got = batch::Host::get_many(&mut st, borrow(&bucket), vec!["a".into(), "b".into()])
            .await
            .unwrap();
        assert_eq!(got, [("a".to_string(), Some(b"1".to_vec()))]);
    }
}
