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

/// Every value that must never appear in a log line or a response.
pub const SECRETS: &[&str] = &[WEBHOOK_SECRET, PREVIOUS_SECRET, API_KEY, API_SECRET];

/// A simulator with one funded account using [`API_KEY`].
pub fn sim() -> Sim {
    let mut account = Account::test_default();
    account.api_key = API_KEY.to_string();
    Sim::start(SimOptions {
        accounts: vec![account],
        ..SimOptions::default()
    })
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
pub fn spin_host(sim: &Sim, extra: &[(&str, &str)]) -> SpinHost {
    let mut vars = settings(sim);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    SpinHost::builder(wasm_path(Flavour::Spin))
        .variables(vars)
        .allow_outbound(sim.url())
        .client_addr(Some("52.89.214.238:41234"))
        .build()
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
