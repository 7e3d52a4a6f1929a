//! HTTP front of the simulator: a hyper 1 server on its own tokio runtime in a
//! background thread, so it serves plain `#[test]`s and `#[tokio::test]`s
//! alike.
//!
//! Routes:
//! - `POST /0/private/<Method>`: private Kraken methods (faults apply here).
//! - `GET /0/public/<Method>`: public Kraken methods.
//! - `/_sim/...`: JSON control endpoints for scripts and curl, mirroring the
//!   [`Sim`] methods:
//!   - `GET /_sim/health` → `{"ok":true}`
//!   - `GET /_sim/orders` → booked orders (with their `AddOrder` params)
//!   - `GET /_sim/requests` → request log
//!   - `POST /_sim/faults` with one [`Fault`] as JSON, e.g.
//!     `{"method":"AddOrder","kind":"DropAfterBook"}`
//!   - `GET /_sim/faults` → the queued faults, next first;
//!     `DELETE /_sim/faults` drops them all (`{"ok":true,"cleared":N}`)
//!   - `POST /_sim/reset`
//!   - `POST /_sim/balance` `{"asset":"ZUSD","value":"10","api_key":…}`
//!     (`api_key` optional: primary account)
//!   - `GET /_sim/balances[?api_key=…]` → the account's balances as
//!     `BalanceEx` shows them: `{"ZUSD":{"balance":…,"hold_trade":…},…}`
//!   - `GET /_sim/permissions[?api_key=…]` →
//!     `{"permissions":["query_funds",…]}`; `POST /_sim/permissions`
//!     `{"permissions":["query_funds","create_orders"],"api_key":…}` (a list
//!     of [`Permission`] names or labels, or a comma list, `"all"`, `"none"`)
//!     sets what the key may do: a private call lacking its permission
//!     answers `EGeneral:Permission denied`
//!   - `POST /_sim/pair-status` `{"pair":"XBTUSD","status":"cancel_only"}`
//!   - `POST /_sim/last-price` `{"pair":"XBTUSD","price":"67000.0"}`
//!   - `POST /_sim/system-status` `{"status":"maintenance"}`
//!   - `POST /_sim/fill` `{"txid":"…"}` fills an open order at its price
//!   - `POST /_sim/rate-tier` `{"tier":"starter"}` (`intermediate`, `pro`,
//!     or `null` for no limit) sets the REST rate tier; counters restart at 0
//!   - `GET /_sim/rate` → `{"tier":…,"rate_limited":N,"counters":{key:level}}`
//!
//!   Successes answer `{"ok":true}`; bad input answers 400
//!   `{"ok":false,"error":…}`; control calls are not logged as requests.
//! - anything else: 404.
//!
//! Private requests are processed in their own task, so a request that the
//! client abandons (timeout, closed connection) still reaches the exchange,
//! as on the real one.
//!
//! Every logged request records how its body was framed (`Content-Length`
//! header, `Transfer-Encoding: chunked`), read from the headers before the
//! body is. With a [`RateTier`] set, private calls go through Kraken's REST
//! rate counter, decayed with the simulator's clock: the wall clock, unless a
//! test freezes it ([`Sim::freeze_clock`]) and moves it
//! ([`Sim::advance_clock`]) to make the decay deterministic.

use crate::model::{
    Account, Answer, BookedOrder, Exchange, Fault, FaultKind, Pair, Permission, PrivateRequest,
    RateTier, Reply, RequestRecord,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// How the simulator is started.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Address to listen on (default `127.0.0.1:0`, an ephemeral port).
    pub listen: SocketAddr,
    /// Accounts; the first one is the primary account that the
    /// [`Sim`] helpers (`set_balance`, …) act on.
    pub accounts: Vec<Account>,
    /// Print one line per request to stderr (never secrets or signatures).
    pub log_requests: bool,
    /// Whether `validate=true` also checks funds (default true).
    pub validate_checks_funds: bool,
    /// Kraken's REST rate counter with this tier's limits (default `None`:
    /// no limit). [`Sim::reset`] returns to this tier.
    pub rate_tier: Option<RateTier>,
    /// A pair table of Kraken's size and shape:
    /// [`realistic_market`](crate::model::realistic_market)`(n)`, the default
    /// pairs plus synthetic ones up to `n` in all (Kraken lists
    /// [`KRAKEN_PAIR_COUNT`](crate::model::KRAKEN_PAIR_COUNT)). Default
    /// `None`: the small default table. [`Sim::reset`] returns to this table.
    pub realistic_pairs: Option<usize>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts: vec![Account::test_default()],
            log_requests: false,
            validate_checks_funds: true,
            rate_tier: None,
            realistic_pairs: None,
        }
    }
}

fn build_exchange(options: &SimOptions) -> anyhow::Result<Exchange> {
    let mut ex = Exchange::new(&options.accounts)?;
    ex.validate_checks_funds = options.validate_checks_funds;
    ex.set_rate_tier(options.rate_tier);
    if let Some(n) = options.realistic_pairs {
        ex.use_realistic_pairs(n);
    }
    Ok(ex)
}

struct Shared {
    exchange: Mutex<Exchange>,
    clock: Mutex<Clock>,
    options: SimOptions,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Exchange> {
        self.exchange.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clock(&self) -> MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `now` handed to the exchange, Unix seconds.
    fn now(&self) -> f64 {
        self.clock().now()
    }

    fn primary_key(&self) -> String {
        self.options
            .accounts
            .first()
            .map(|a| a.api_key.clone())
            .unwrap_or_default()
    }

    fn log(&self, rec: Option<RequestRecord>) {
        if !self.options.log_requests {
            return;
        }
        let Some(r) = rec else { return };
        let sig = match r.signature_valid {
            Some(true) => "ok",
            Some(false) => "bad",
            None => "-",
        };
        let status = r.status.map_or("dropped".to_string(), |s| s.to_string());
        let fault = r.fault.map_or("-".to_string(), |f| format!("{f:?}"));
        let rest = r
            .rest_counter
            .map_or("-".to_string(), |c| format!("{c:.2}"));
        eprintln!(
            "kraken-sim: #{} {} {} sig={} status={} errors={:?} booked={:?} fault={} rest={}",
            r.seq, r.http_method, r.path, sig, status, r.errors, r.booked, fault, rest
        );
    }
}

fn wall_clock() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The simulator's clock: the wall clock, or a frozen instant, plus an
/// offset (see [`Sim::freeze_clock`], [`Sim::advance_clock`]).
#[derive(Clone, Copy, Debug, Default)]
struct Clock {
    frozen: Option<f64>,
    offset: f64,
}

impl Clock {
    fn now(&self) -> f64 {
        self.frozen.unwrap_or_else(wall_clock) + self.offset
    }
}

/// A running simulator. Stops (and frees its port) when dropped.
///
/// All methods are synchronous and thread-safe.
pub struct Sim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Starts the simulator and returns once it is listening. Panics if it
    /// cannot (bad secret, address in use); see [`Sim::try_start`].
    pub fn start(options: SimOptions) -> Sim {
        Self::try_start(options).expect("kraken-sim failed to start")
    }

    /// Starts the simulator and returns once it is listening.
    pub fn try_start(options: SimOptions) -> anyhow::Result<Sim> {
        let exchange = build_exchange(&options)?;
        let listener = std::net::TcpListener::bind(options.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            exchange: Mutex::new(exchange),
            clock: Mutex::new(Clock::default()),
            options,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kraken-sim-worker")
            .enable_all()
            .build()?;
        let (tx, rx) = oneshot::channel();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kraken-sim".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => serve(l, serving, rx).await,
                        Err(err) => eprintln!("kraken-sim: cannot listen: {err}"),
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(Sim {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The primary account (first of [`SimOptions::accounts`]).
    pub fn account(&self) -> Account {
        self.shared
            .options
            .accounts
            .first()
            .cloned()
            .expect("no account configured")
    }

    /// Every booked order, oldest first, with its `AddOrder` parameters and
    /// current state.
    pub fn orders(&self) -> Vec<BookedOrder> {
        self.shared.lock().orders.clone()
    }

    /// Every request received (except `/_sim/` calls), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Queues a fault for a coming private request.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().push_fault(fault);
    }

    /// Sets a balance of the primary account. Panics if `value` is not a
    /// decimal.
    pub fn set_balance(&self, asset: &str, value: &str) {
        let v = Decimal::from_str(value).unwrap_or_else(|_| panic!("bad balance {value:?}"));
        let key = self.shared.primary_key();
        self.shared.lock().set_balance(&key, asset, v);
    }

    /// Sets what the primary account's key may do (every private call
    /// lacking its permission answers `EGeneral:Permission denied`).
    /// [`Sim::reset`] returns to the account's configured permissions.
    pub fn set_permissions(&self, permissions: impl IntoIterator<Item = Permission>) {
        let key = self.shared.primary_key();
        self.shared
            .lock()
            .set_permissions(&key, permissions.into_iter().collect());
    }

    /// What the primary account's key may do.
    pub fn permissions(&self) -> BTreeSet<Permission> {
        let key = self.shared.primary_key();
        self.shared
            .lock()
            .permissions(&key)
            .cloned()
            .unwrap_or_default()
    }

    /// The queued faults, next first.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.lock().faults.iter().cloned().collect()
    }

    /// A balance of the primary account (including held funds).
    pub fn balance(&self, asset: &str) -> Decimal {
        let key = self.shared.primary_key();
        self.shared.lock().balance(&key, asset)
    }

    /// Sets a pair's `status` (`online`, `cancel_only`, `post_only`,
    /// `limit_only`, `reduce_only`, …). Panics if the pair is unknown.
    pub fn set_pair_status(&self, pair: &str, status: &str) {
        assert!(
            self.shared.lock().set_pair_status(pair, status),
            "unknown pair {pair:?}"
        );
    }

    /// Sets a pair's last trade price (market fills, ticker). Panics if the
    /// pair is unknown or the price is not a positive decimal.
    pub fn set_last_price(&self, pair: &str, price: &str) {
        let p = Decimal::from_str(price).unwrap_or_else(|_| panic!("bad price {price:?}"));
        assert!(
            self.shared.lock().set_last_price(pair, p),
            "cannot set price of {pair:?}"
        );
    }

    /// The pair table, in `AssetPairs` order (ids in [`Pair::id`]).
    pub fn pairs(&self) -> Vec<Pair> {
        self.shared.lock().pairs.clone()
    }

    /// How many pairs `AssetPairs` lists.
    pub fn pair_count(&self) -> usize {
        self.shared.lock().pairs.len()
    }

    /// The pair `name` designates (id, altname or wsname), if any.
    pub fn find_pair(&self, name: &str) -> Option<Pair> {
        self.shared.lock().find_pair(name).cloned()
    }

    /// A pair's last trade price (the `Ticker`'s `c`), if the pair is known.
    pub fn last_price(&self, pair: &str) -> Option<Decimal> {
        self.shared.lock().last_price(pair)
    }

    /// Sets `SystemStatus.status` (`online`, `maintenance`, `cancel_only`,
    /// `post_only`).
    pub fn set_system_status(&self, status: &str) {
        self.shared.lock().system_status = status.to_string();
    }

    /// Sets the REST rate tier (`None`: no limit); every key's counter
    /// restarts at 0. [`Sim::reset`] returns to [`SimOptions::rate_tier`].
    pub fn set_rate_tier(&self, tier: Option<RateTier>) {
        self.shared.lock().set_rate_tier(tier);
    }

    /// The REST rate tier in force.
    pub fn rate_tier(&self) -> Option<RateTier> {
        self.shared.lock().rate_tier()
    }

    /// A key's REST rate counter now (0 for an unknown key or with no tier).
    pub fn rest_counter(&self, api_key: &str) -> f64 {
        let t = self.shared.now();
        self.shared.lock().rest_counter(api_key, t)
    }

    /// How many private calls the REST counter refused since the start or
    /// the last reset (injected [`FaultKind::RateLimit`] not included).
    pub fn rate_limited_count(&self) -> u64 {
        self.shared.lock().rate_limited_count()
    }

    /// Moves a pair's market to `price`: the last trade, and every open limit
    /// order the move crosses filled at its own price (balances moved, holds
    /// released). The txids filled. Panics if the pair is unknown or the
    /// price is not a positive decimal.
    pub fn move_price(&self, pair: &str, price: &str) -> Vec<String> {
        let p = Decimal::from_str(price).unwrap_or_else(|_| panic!("bad price {price:?}"));
        let t = self.shared.now();
        self.shared
            .lock()
            .move_price(pair, p, t)
            .unwrap_or_else(|| panic!("cannot move the price of {pair:?}"))
    }

    /// Fills an open order at its price (maker fee); false if there is no
    /// open order with this txid.
    pub fn fill_order(&self, txid: &str) -> bool {
        let t = self.shared.now();
        self.shared.lock().fill_order(txid, t)
    }

    /// Back to the initial state: balances, nonces, orders, log, faults,
    /// pairs, prices, rate tier and counters, and the wall clock.
    pub fn reset(&self) {
        let fresh = build_exchange(&self.shared.options).expect("options were valid at start");
        *self.shared.lock() = fresh;
        *self.shared.clock() = Clock::default();
    }

    /// The simulator's current time, Unix seconds: what the exchange sees
    /// (order times, `Time`, the REST counter's decay).
    pub fn now(&self) -> f64 {
        self.shared.now()
    }

    /// Stops the simulator's clock at its current time, so that tests over
    /// HTTP see no time pass between requests (the REST counter does not
    /// decay) until [`Sim::advance_clock`] moves it.
    pub fn freeze_clock(&self) {
        let mut c = self.shared.clock();
        if c.frozen.is_none() {
            c.frozen = Some(wall_clock());
        }
    }

    /// Moves the simulator's clock forward by `secs` (frozen or not),
    /// e.g. to let the REST counter decay without sleeping.
    pub fn advance_clock(&self, secs: f64) {
        self.shared.clock().offset += secs;
    }

    /// Runs `f` on the exchange state, for anything the helpers do not cover.
    pub fn with_exchange<R>(&self, f: impl FnOnce(&mut Exchange) -> R) -> R {
        f(&mut self.shared.lock())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// Returned by the service to make hyper close the connection without
/// writing a response.
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

type HttpResult = Result<Response<Full<Bytes>>, DropConnection>;

fn response(reply: Reply) -> Response<Full<Bytes>> {
    Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bad status")));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

struct Incoming0 {
    http_method: String,
    path: String,
    api_key: Option<String>,
    api_sign: Option<String>,
    content_type: Option<String>,
    framing: Framing,
    body: Bytes,
}

/// How a request body was framed, from its headers.
#[derive(Clone, Copy, Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    chunked: bool,
}

impl Framing {
    fn of(headers: &hyper::HeaderMap) -> Self {
        let content_length = headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = headers
            .get_all(hyper::header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        Self {
            content_length,
            chunked,
        }
    }

    /// Writes the framing into the request just logged.
    fn record(self, ex: &mut Exchange) {
        if let Some(rec) = ex.requests.last_mut() {
            rec.content_length = self.content_length;
            rec.chunked = self.chunked;
        }
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> HttpResult {
    let (parts, body) = req.into_parts();
    // Read before the body, from the headers as the client sent them.
    let framing = Framing::of(&parts.headers);
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return Ok(response(Reply::text(413, "request body too large"))),
    };
    let path = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let http_method = parts.method.as_str().to_string();

    if path == "/_sim" || path.starts_with("/_sim/") {
        return Ok(response(control(&shared, &http_method, &path, &body)));
    }
    if path.starts_with("/0/private/") {
        let incoming = Incoming0 {
            http_method,
            path,
            api_key: header("api-key"),
            api_sign: header("api-sign"),
            content_type: header("content-type"),
            framing,
            body,
        };
        // Own task: the exchange handles the request even if the client
        // goes away meanwhile.
        return match tokio::spawn(private(shared, incoming)).await {
            Ok(Some(reply)) => Ok(response(reply)),
            _ => Err(DropConnection),
        };
    }
    let t = shared.now();
    let (reply, rec) = {
        let mut ex = shared.lock();
        let reply = if path.starts_with("/0/public/") {
            ex.public(&http_method, &path, t)
        } else {
            ex.record_other(&http_method, &path, 404, t);
            Reply::text(404, "not found")
        };
        framing.record(&mut ex);
        (reply, ex.requests.last().cloned())
    };
    shared.log(rec);
    Ok(response(reply))
}

async fn private(shared: Arc<Shared>, req: Incoming0) -> Option<Reply> {
    let method = crate::model::split_method(&req.path, "/0/private/").map_or("", |(m, _)| m);
    let fault = shared.lock().take_fault(method);
    if let Some(FaultKind::Delay { ms }) = fault {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let preq = PrivateRequest {
        http_method: &req.http_method,
        path: &req.path,
        api_key: req.api_key.as_deref(),
        api_sign: req.api_sign.as_deref(),
        content_type: req.content_type.as_deref(),
        content_length: req.framing.content_length,
        chunked: req.framing.chunked,
        body: &req.body,
    };
    let (outcome, rec) = {
        let mut ex = shared.lock();
        let outcome = ex.private(&preq, shared.now(), fault);
        (outcome, ex.requests.last().cloned())
    };
    shared.log(rec);
    if outcome.delay_after_ms > 0 {
        tokio::time::sleep(Duration::from_millis(outcome.delay_after_ms)).await;
    }
    match outcome.answer {
        Answer::Reply(r) => Some(r),
        Answer::Drop => None,
    }
}

fn ok_json() -> Reply {
    Reply::json(200, &json!({ "ok": true }))
}

fn bad_request(msg: &str) -> Reply {
    Reply::json(400, &json!({ "ok": false, "error": msg }))
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, Reply> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request(&format!("missing string field {name:?}")))
}

/// The account a control call names: `api_key` in its JSON body or its
/// query string, else the primary account.
fn account_key(shared: &Shared, named: Option<&str>) -> String {
    named.map_or_else(|| shared.primary_key(), str::to_string)
}

/// A [`Permission`] set from a JSON list of names or labels, or a string
/// (comma list, `all`, `none`).
fn permissions_of(v: &Value) -> Result<BTreeSet<Permission>, Reply> {
    match v {
        Value::String(text) => Permission::parse_list(text).map_err(|e| bad_request(&e)),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| bad_request("permissions must be strings"))
                    .and_then(|t| Permission::from_str(t).map_err(|e| bad_request(&e)))
            })
            .collect(),
        _ => Err(bad_request(
            "\"permissions\" must be a list of permissions or a string",
        )),
    }
}

fn control(shared: &Shared, http_method: &str, path: &str, body: &[u8]) -> Reply {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let query = crate::params::parse_form(query);
    let query_key = query.get("api_key").map(String::as_str);
    let parsed = || serde_json::from_slice::<Value>(body).map_err(|e| bad_request(&e.to_string()));
    let result: Result<Reply, Reply> = (|| match (http_method, route) {
        ("GET", "/_sim/health") => Ok(ok_json()),
        ("GET", "/_sim/orders") => Ok(Reply::json(200, &json!(shared.lock().orders))),
        ("GET", "/_sim/requests") => Ok(Reply::json(200, &json!(shared.lock().requests))),
        ("POST", "/_sim/faults") => {
            let fault: Fault =
                serde_json::from_slice(body).map_err(|e| bad_request(&e.to_string()))?;
            shared.lock().push_fault(fault);
            Ok(ok_json())
        }
        ("GET", "/_sim/faults") => Ok(Reply::json(200, &json!(shared.lock().faults))),
        ("DELETE", "/_sim/faults") => {
            let cleared = std::mem::take(&mut shared.lock().faults).len();
            Ok(Reply::json(200, &json!({ "ok": true, "cleared": cleared })))
        }
        ("GET", "/_sim/balances") => shared
            .lock()
            .balances_json(&account_key(shared, query_key))
            .map(|v| Reply::json(200, &v))
            .ok_or_else(|| bad_request("unknown api_key")),
        ("GET", "/_sim/permissions") => shared
            .lock()
            .permissions(&account_key(shared, query_key))
            .map(|p| Reply::json(200, &json!({ "permissions": p })))
            .ok_or_else(|| bad_request("unknown api_key")),
        ("POST", "/_sim/permissions") => {
            let v = parsed()?;
            let permissions = permissions_of(
                v.get("permissions")
                    .ok_or_else(|| bad_request("missing field \"permissions\""))?,
            )?;
            let key = account_key(shared, v.get("api_key").and_then(Value::as_str));
            if shared.lock().set_permissions(&key, permissions) {
                Ok(ok_json())
            } else {
                Err(bad_request("unknown api_key"))
            }
        }
        ("POST", "/_sim/reset") => {
            let fresh = build_exchange(&shared.options).map_err(|e| bad_request(&e.to_string()))?;
            *shared.lock() = fresh;
            *shared.clock() = Clock::default();
            Ok(ok_json())
        }
        ("POST", "/_sim/balance") => {
            let v = parsed()?;
            let asset = field(&v, "asset")?;
            let value =
                Decimal::from_str(field(&v, "value")?).map_err(|e| bad_request(&e.to_string()))?;
            let key = v
                .get("api_key")
                .and_then(Value::as_str)
                .map_or_else(|| shared.primary_key(), str::to_string);
            if shared.lock().set_balance(&key, asset, value) {
                Ok(ok_json())
            } else {
                Err(bad_request("unknown api_key"))
            }
        }
        ("POST", "/_sim/pair-status") => {
            let v = parsed()?;
            if shared
                .lock()
                .set_pair_status(field(&v, "pair")?, field(&v, "status")?)
            {
                Ok(ok_json())
            } else {
                Err(bad_request("unknown pair"))
            }
        }
        ("POST", "/_sim/last-price") => {
            let v = parsed()?;
            let price =
                Decimal::from_str(field(&v, "price")?).map_err(|e| bad_request(&e.to_string()))?;
            if shared.lock().set_last_price(field(&v, "pair")?, price) {
                Ok(ok_json())
            } else {
                Err(bad_request("unknown pair or price not positive"))
            }
        }
        ("POST", "/_sim/system-status") => {
            let v = parsed()?;
            shared.lock().system_status = field(&v, "status")?.to_string();
            Ok(ok_json())
        }
        ("POST", "/_sim/rate-tier") => {
            let v = parsed()?;
            let tier = match v.get("tier") {
                None => return Err(bad_request("missing field \"tier\"")),
                Some(Value::Null) => None,
                Some(Value::String(t)) => Some(RateTier::from_str(t).map_err(|e| bad_request(&e))?),
                Some(_) => return Err(bad_request("tier must be a string or null")),
            };
            shared.lock().set_rate_tier(tier);
            Ok(ok_json())
        }
        ("GET", "/_sim/rate") => {
            let t = shared.now();
            let ex = shared.lock();
            let counters: serde_json::Map<String, Value> = ex
                .accounts
                .keys()
                .map(|k| (k.clone(), json!(ex.rest_counter(k, t))))
                .collect();
            Ok(Reply::json(
                200,
                &json!({
                    "tier": ex.rate_tier(),
                    "rate_limited": ex.rate_limited_count(),
                    "counters": counters,
                }),
            ))
        }
        ("POST", "/_sim/fill") => {
            let v = parsed()?;
            let t = shared.now();
            if shared.lock().fill_order(field(&v, "txid")?, t) {
                Ok(ok_json())
            } else {
                Err(bad_request("no open order with this txid"))
            }
        }
        _ => Ok(Reply::json(
            404,
            &json!({ "ok": false, "error": "unknown control endpoint" }),
        )),
    })();
    result.unwrap_or_else(|r| r)
}
