//! Shared set-up for the end-to-end tests: the simulator, the bridge's settings, alert
//! builders, and a secret-leak scan applied to every exchange.

#![allow(dead_code)] // each test file uses a different part

use bridge_host::{Exchange, Flavour, SpinHost, wasm_path};
use bytes::Bytes;
use kraken_sim::{Account, Sim, SimOptions};

/// The configured webhook secret (34 bytes).
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret-9f3b1c7d2a6e4f80";
/// The previous webhook secret, accepted while rotating.
pub const PREVIOUS_SECRET: &str = "e2e-previous-secret-51d0c2b9e7a4f36";
/// The simulator account's API key (long enough that redaction cannot hit ordinary text).
pub const API_KEY: &str = "e2e-kraken-api-key-6c1f0e2d9b8a7f6e5d4c3b2a1908";
/// The simulator account's private key: Kraken's published example key.
pub const API_SECRET: &str = Account::TEST_API_SECRET;

/// Three further keys of the simulator account, `(api_key, api_secret)`, for
/// `kraken_api_keys` ([`pool_sim`], [`pool_setting`]).
pub const POOL_KEYS: [(&str, &str); 3] = [
    (
        "e2e-pool-key-1-0a9b8c7d6e5f4a3b2c1d",
        "cG9vbC1rZXktMS1zZWNyZXQtMGE5YjhjN2Q2ZTVmNGEzYg==",
    ),
    (
        "e2e-pool-key-2-1b2c3d4e5f6a7b8c9d0e",
        "cG9vbC1rZXktMi1zZWNyZXQtMWIyYzNkNGU1ZjZhN2I4Yw==",
    ),
    (
        "e2e-pool-key-3-2c3d4e5f6a7b8c9d0e1f",
        "cG9vbC1rZXktMy1zZWNyZXQtMmMzZDRlNWY2YTdiOGM5ZA==",
    ),
];

/// The webhook secret of account `swing` ([`accounts_setting`]).
pub const SWING_SECRET: &str = "e2e-swing-webhook-secret-7a0c3e5b19d2";
/// The webhook secret of account `paper`.
pub const PAPER_SECRET: &str = "e2e-paper-webhook-secret-2f8d6b4a0c1e";
/// The webhook secret of account `scalp`.
pub const SCALP_SECRET: &str = "e2e-scalp-webhook-secret-9e1f3a5c7b2d";
/// Account `swing`'s own Kraken key: another account of the simulator ([`accounts_sim`]).
pub const SWING_API_KEY: &str = "e2e-swing-kraken-api-key-3b5d7f9a1c2e4f6a8b";
/// Its private key.
pub const SWING_API_SECRET: &str = "c3dpbmctYWNjb3VudC1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg==";

/// Every value that must never appear in a log line or a response.
pub const SECRETS: &[&str] = &[
    WEBHOOK_SECRET,
    PREVIOUS_SECRET,
    API_KEY,
    API_SECRET,
    SWING_SECRET,
    PAPER_SECRET,
    SCALP_SECRET,
    SWING_API_KEY,
    SWING_API_SECRET,
    POOL_KEYS[0].0,
    POOL_KEYS[0].1,
    POOL_KEYS[1].0,
    POOL_KEYS[1].1,
    POOL_KEYS[2].0,
    POOL_KEYS[2].1,
];

/// A simulator with one funded account using [`API_KEY`].
pub fn sim() -> Sim {
    let mut account = Account::test_default();
    account.api_key = API_KEY.to_string();
    Sim::start(SimOptions {
        accounts: vec![account],
        ..SimOptions::default()
    })
}

/// A simulator whose account has the first `n` of [`POOL_KEYS`] beside [`API_KEY`].
pub fn pool_sim(n: usize) -> Sim {
    let mut account = Account::test_default();
    account.api_key = API_KEY.to_string();
    for (key, secret) in &POOL_KEYS[..n] {
        account = account.with_key(*key, *secret);
    }
    Sim::start(SimOptions {
        accounts: vec![account],
        ..SimOptions::default()
    })
}

/// A simulator with two Kraken accounts: the default one ([`API_KEY`]) and `swing`'s own
/// ([`SWING_API_KEY`]).
pub fn accounts_sim() -> Sim {
    let mut account = Account::test_default();
    account.api_key = API_KEY.to_string();
    let mut swing = Account::test_default();
    swing.api_key = SWING_API_KEY.to_string();
    swing.api_secret = SWING_API_SECRET.to_string();
    Sim::start(SimOptions {
        accounts: vec![account, swing],
        ..SimOptions::default()
    })
}

/// `kraken_accounts`: `swing` with its own Kraken account and a cap, `paper` a dry run on
/// the top level's keys, `scalp` switched off.
pub fn accounts_setting() -> String {
    serde_json::json!({
        "swing": {"webhook_secret": SWING_SECRET, "kraken_api_key": SWING_API_KEY,
                  "kraken_api_secret": SWING_API_SECRET, "max_order_value": "5000"},
        "paper": {"webhook_secret": PAPER_SECRET, "dry_run": true},
        "scalp": {"webhook_secret": SCALP_SECRET, "trading_enabled": false},
    })
    .to_string()
}

/// `POST path` with `body` and headers.
pub fn post_to(
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> http::Request<Bytes> {
    let mut req = http::Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body.into()).unwrap()
}

/// A market buy with an `id`, authenticated with `secret` (an account's).
pub fn market_alert_with(secret: &str, id: &str, volume: &str) -> String {
    format!(
        r#"{{"secret":"{secret}","id":"{id}","symbol":"XBTUSD","side":"buy","volume":"{volume}"}}"#
    )
}

/// The `cl_ord_id` the bridge derives for an alert with this `id` sent to `account`.
pub fn cl_ord_id_in(account: &str, id: &str) -> String {
    tv_kraken_bridge::idempotency::DedupeKey::new(Some(id), b"")
        .in_account(Some(account))
        .cl_ord_id()
}

/// `kraken_api_keys` holding the first `n` of [`POOL_KEYS`].
pub fn pool_setting(n: usize) -> String {
    let keys: Vec<_> = POOL_KEYS[..n]
        .iter()
        .map(|(k, s)| serde_json::json!({"api_key": k, "api_secret": s}))
        .collect();
    serde_json::Value::from(keys).to_string()
}

/// The bridge's settings pointing at `sim`.
pub fn settings(sim: &Sim) -> Vec<(String, String)> {
    [
        ("webhook_secret", WEBHOOK_SECRET),
        ("kraken_api_key", API_KEY),
        ("kraken_api_secret", API_SECRET),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("kraken_api_url".to_string(), sim.url())])
    .collect()
}

/// The Spin flavour with `settings` (later entries win), allowed to reach only `sim`.
pub fn spin_builder(sim: &Sim, extra: &[(&str, &str)]) -> bridge_host::SpinHostBuilder {
    let mut vars = settings(sim);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    SpinHost::builder(wasm_path(Flavour::Spin))
        .variables(vars)
        .allow_outbound(sim.url())
        .client_addr(Some("52.89.214.238:41234"))
}

/// [`spin_builder`], built, with a store of its own.
pub fn spin_host(sim: &Sim, extra: &[(&str, &str)]) -> SpinHost {
    spin_builder(sim, extra).build()
}

/// [`spin_builder`] on a shared key-value store: one instance of a fleet.
pub fn spin_host_on(
    sim: &Sim,
    store: &bridge_host::KeyValueStore,
    extra: &[(&str, &str)],
) -> SpinHost {
    spin_builder(sim, extra).kv_store(store.clone()).build()
}

/// Runs every job at the same instant: each is spawned, waits at one barrier, then runs.
pub async fn at_the_same_instant<T, F>(jobs: Vec<F>) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(jobs.len()));
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                job.await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("a delivery task"));
    }
    out
}

/// The wall clock in milliseconds since the Unix epoch, as the guest reads it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A position alert (contract 2.6) for XBTUSD with `id` and the target `position`.
pub fn position_alert(id: &str, position: &str) -> String {
    format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","id":"{id}","action":"position","symbol":"XBTUSD","position":"{position}"}}"#
    )
}

/// The next edge of a claim slot (`tv_kraken_bridge::idempotency::CLAIM_SLOT_SECS`), in
/// milliseconds since the Unix epoch.
pub fn next_claim_slot_edge_ms() -> u64 {
    let slot_ms = tv_kraken_bridge::idempotency::CLAIM_SLOT_SECS * 1_000;
    (now_ms() / slot_ms + 1) * slot_ms
}

/// One alert delivered as TradingView delivers it: to `hosts[first]`, then, while the answer
/// is a 5xx other than 504, resent 5 s later, at most three times, each resend to the next
/// host (TradingView resends to the URL, which any instance may serve). The exchanges, first
/// to last.
pub async fn deliver_like_tradingview(
    hosts: Vec<SpinHost>,
    first: usize,
    body: String,
) -> Vec<Exchange> {
    deliver_like_tradingview_to(hosts, first, "/webhook", body).await
}

/// [`deliver_like_tradingview`] to `path` (`/webhook/{account}`).
pub async fn deliver_like_tradingview_to(
    hosts: Vec<SpinHost>,
    first: usize,
    path: &str,
    body: String,
) -> Vec<Exchange> {
    let mut exchanges: Vec<Exchange> = Vec::new();
    loop {
        let host = &hosts[(first + exchanges.len()) % hosts.len()];
        let ex = host
            .handle(post_to(
                path,
                body.clone(),
                &[("content-type", "text/plain")],
            ))
            .await;
        let resent = (500..600).contains(&ex.status) && ex.status != 504;
        exchanges.push(ex);
        if !resent || exchanges.len() == 4 {
            return exchanges;
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// `POST /webhook` with `body` and headers.
pub fn post(body: impl Into<Bytes>, headers: &[(&str, &str)]) -> http::Request<Bytes> {
    let mut req = http::Request::post("/webhook");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body.into()).unwrap()
}

/// `GET path`.
pub fn get(path: &str) -> http::Request<Bytes> {
    http::Request::get(path).body(Bytes::new()).unwrap()
}

/// Sends `req` and fails if any secret appears in the response or the guest's output.
pub fn send(host: &SpinHost, req: http::Request<Bytes>) -> Exchange {
    let ex = host.handle_blocking(req);
    assert_no_secrets(&ex);
    ex
}

/// The secret-leak scan: response headers and body, guest stdout and stderr.
pub fn assert_no_secrets(ex: &Exchange) {
    let mut seen = format!("{}\n{}\n{}", ex.text(), ex.stdout, ex.stderr);
    for (k, v) in &ex.headers {
        seen.push_str(&format!("\n{k}: {}", String::from_utf8_lossy(v.as_bytes())));
    }
    for secret in SECRETS {
        assert!(
            !seen.contains(secret),
            "a configured secret leaked into a response or log line"
        );
    }
}

/// The audit events the guest wrote, in order.
pub fn events(ex: &Exchange) -> Vec<String> {
    ex.stdout
        .lines()
        .chain(ex.stderr.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["event"].as_str().map(str::to_string))
        .collect()
}

/// A TradingView-shaped limit alert with the body secret.
pub fn limit_alert(secret: &str) -> String {
    format!(
        r#"{{"secret":"{secret}","symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"0.0125","price":"37500.5"}}"#
    )
}

// ---- exactly-once and soak helpers -------------------------------------------------------

/// The contract's time budget for one request (TradingView cancels at 3 s).
pub const BUDGET: std::time::Duration = std::time::Duration::from_millis(2_500);

/// A TradingView-shaped market buy with an `id` and the body secret.
pub fn market_alert(id: &str, volume: &str) -> String {
    format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","id":"{id}","symbol":"XBTUSD","side":"buy","volume":"{volume}"}}"#
    )
}

/// A limit buy with an `id`, priced far below the simulator's market (67000) so it rests open.
pub fn resting_limit_alert(id: &str) -> String {
    format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","id":"{id}","symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"0.001","price":"30000.0"}}"#
    )
}

/// The `cl_ord_id` the bridge derives for an alert with this `id` (independent of the body).
pub fn cl_ord_id_for_id(id: &str) -> String {
    tv_kraken_bridge::idempotency::DedupeKey::new(Some(id), b"").cl_ord_id()
}

/// The `cl_ord_id` the bridge derives for an alert without `id` (SHA-256 of the raw body).
pub fn cl_ord_id_for_body(body: &str) -> String {
    tv_kraken_bridge::idempotency::DedupeKey::new(None, body.as_bytes()).cl_ord_id()
}

/// Booked orders carrying `cl_ord_id`.
pub fn orders_with(sim: &Sim, cl_ord_id: &str) -> Vec<kraken_sim::BookedOrder> {
    sim.orders()
        .into_iter()
        .filter(|o| o.cl_ord_id.as_deref() == Some(cl_ord_id))
        .collect()
}

/// Settings as the portable flavour reads them: upper-case environment variables.
pub fn serve_env(sim: &Sim, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = settings(sim)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The portable flavour under `wasmtime serve`, pointed at `sim` (`extra`: upper-case names).
pub fn serve_host(sim: &Sim, extra: &[(&str, &str)]) -> bridge_host::ServeHost {
    bridge_host::ServeHost::builder(wasm_path(Flavour::Wasi))
        .envs(serve_env(sim, extra))
        .start()
}

/// Audit events in output that may carry a host prefix per line (`wasmtime serve` writes
/// `stdout [N] :: {...}`): every line's JSON object from its first `{`.
pub fn prefixed_events(ex: &Exchange) -> Vec<String> {
    ex.stdout
        .lines()
        .chain(ex.stderr.lines())
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["event"].as_str().map(str::to_string))
        .collect()
}

/// The simulator's log of private (signed) requests: what could change the account.
pub fn private_requests(sim: &Sim) -> Vec<kraken_sim::RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.scope == "private")
        .collect()
}

/// One answer of the bridge to an alert that reached the order stage, read strictly:
/// anything outside the contract's outcomes (2.5) fails the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `200 placed` with its one txid.
    Placed(String),
    /// `200 validated` (dry run).
    Validated,
    /// `200 duplicate` replaying `outcome` (the first outcome's `status`, or its `error` when
    /// it had none), with the txid when the first outcome was placed.
    Duplicate {
        outcome: String,
        txid: Option<String>,
    },
    /// `202 pending`.
    Pending,
    /// `503` with `retry-after`.
    Retryable,
    /// `422 order_rejected` with Kraken's error.
    Rejected(String),
}

impl Answer {
    /// A short name: `placed`, `validated`, `duplicate`, `pending`, `503`, `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Placed(_) => "placed",
            Answer::Validated => "validated",
            Answer::Duplicate { .. } => "duplicate",
            Answer::Pending => "pending",
            Answer::Retryable => "503",
            Answer::Rejected(_) => "rejected",
        }
    }

    /// What a later delivery of the same alert answers once this outcome is recorded.
    pub fn as_duplicate(&self) -> Answer {
        let (outcome, txid) = match self {
            Answer::Placed(txid) => ("placed", Some(txid.clone())),
            Answer::Validated => ("validated", None),
            Answer::Pending => ("pending", None),
            Answer::Rejected(_) => ("order_rejected", None),
            Answer::Duplicate { .. } => return self.clone(),
            Answer::Retryable => panic!("a 503 is not recorded"),
        };
        Answer::Duplicate {
            outcome: outcome.into(),
            txid,
        }
    }

    /// The txid this answer says exists on Kraken.
    pub fn claimed_txid(&self) -> Option<&str> {
        match self {
            Answer::Placed(t) => Some(t),
            Answer::Duplicate {
                outcome,
                txid: Some(t),
            } if outcome == "placed" => Some(t),
            _ => None,
        }
    }

    /// The audit event that must accompany this answer.
    pub fn audit_event(&self) -> &'static str {
        match self {
            Answer::Placed(_) => "order_placed",
            Answer::Validated => "order_validated",
            Answer::Duplicate { .. } => "alert_duplicate",
            Answer::Pending => "order_pending",
            Answer::Retryable | Answer::Rejected(_) => "order_rejected",
        }
    }
}

fn one_txid(body: &serde_json::Value, ex: &Exchange) -> String {
    let txids = body["txid"]
        .as_array()
        .unwrap_or_else(|| panic!("no txid array:\n{ex}"));
    assert_eq!(txids.len(), 1, "exactly one txid:\n{ex}");
    txids[0].as_str().expect("txid string").to_string()
}

/// Reads the answer to an alert whose order carries `cl`: no secret anywhere, no guest
/// failure, inside the 2.5 s budget, one of the contract's outcomes, with its audit event.
pub fn read_answer(ex: &Exchange, cl: &str) -> Answer {
    assert_no_secrets(ex);
    assert!(
        ex.error.is_none(),
        "the guest failed ({:?}):\n{ex}",
        ex.error
    );
    assert!(
        ex.elapsed < BUDGET,
        "answered after {:?}, the budget is {BUDGET:?}:\n{ex}",
        ex.elapsed
    );
    let body = ex.json();
    let answer = match (ex.status, body["status"].as_str(), body["error"].as_str()) {
        (200, Some("placed"), _) => {
            assert_eq!(body["cl_ord_id"], cl, "{ex}");
            Answer::Placed(one_txid(&body, ex))
        }
        (200, Some("validated"), _) => Answer::Validated,
        (200, Some("duplicate"), _) => {
            assert_eq!(body["cl_ord_id"], cl, "{ex}");
            let outcome = body["outcome"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or_default()
                .to_string();
            let txid = (outcome == "placed").then(|| one_txid(&body, ex));
            Answer::Duplicate { outcome, txid }
        }
        (202, Some("pending"), _) => {
            assert_eq!(body["cl_ord_id"], cl, "{ex}");
            Answer::Pending
        }
        (503, _, _) => {
            let retry_after = ex
                .header("retry-after")
                .unwrap_or_else(|| panic!("503 without retry-after:\n{ex}"));
            assert!(retry_after.parse::<u32>().is_ok(), "{ex}");
            Answer::Retryable
        }
        (422, _, Some("order_rejected")) => {
            Answer::Rejected(body["kraken_error"].as_str().unwrap_or_default().into())
        }
        _ => panic!("an answer outside the contract's outcomes:\n{ex}"),
    };
    // This request's own lines: under `wasmtime serve` the captured output also holds the
    // lines of requests running at the same time.
    let request_id = ex
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id:\n{ex}"));
    let own = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .filter_map(|l| l.find('{').map(|i| &l[i..]))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["request_id"] == request_id)
            .collect()
    };
    let expected = answer.audit_event();
    let seen: Vec<_> = own(&ex.stdout)
        .into_iter()
        .chain(own(&ex.stderr))
        .map(|v| v["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        seen.iter().any(|e| e == expected),
        "{answer:?} without an {expected} audit event of its own (saw {seen:?}):\n{ex}"
    );
    if answer == Answer::Pending {
        assert!(
            own(&ex.stderr)
                .iter()
                .any(|v| v["event"] == "order_pending"),
            "order_pending goes to stderr"
        );
    }
    answer
}

/// The answer against the exchange's truth (`orders`, taken after it arrived): at most one
/// order per cl_ord_id, a claimed txid exists, and no 5xx while the order exists.
pub fn check_truth_in(
    orders: &[kraken_sim::BookedOrder],
    cl: &str,
    answer: &Answer,
    ex: &Exchange,
    what: &str,
) {
    let booked: Vec<_> = orders
        .iter()
        .filter(|o| o.cl_ord_id.as_deref() == Some(cl))
        .collect();
    assert!(
        booked.len() <= 1,
        "{what}: {} orders share cl_ord_id {cl}: {booked:#?}",
        booked.len()
    );
    if let Some(txid) = answer.claimed_txid() {
        assert!(
            booked.iter().any(|o| o.txid == txid),
            "{what}: the bridge claims {txid} but the exchange holds {booked:#?}:\n{ex}"
        );
    }
    if ex.status >= 500 {
        assert!(
            booked.is_empty(),
            "{what}: a 5xx (TradingView resends) while order {} exists:\n{ex}",
            booked[0].txid
        );
    }
}

/// [`check_truth_in`] against the simulator's orders now.
pub fn check_truth(sim: &Sim, cl: &str, answer: &Answer, ex: &Exchange, what: &str) {
    check_truth_in(&sim.orders(), cl, answer, ex, what);
}

// ---- processes started by scripts -------------------------------------------------------

/// A free loopback `host:port`.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A child started in its own process group (`setsid`); dropping it stops the whole group,
/// the servers a script started included.
pub struct KillGroup(pub std::process::Child);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // `--` so that the negative process-group id is not read as an option.
        let group = format!("-{}", self.0.id());
        let _ = std::process::Command::new("kill")
            .args(["-s", "TERM", "--", &group])
            .status();
        let _ = self.0.wait();
    }
}
