//! The portable flavour under the real `wasmtime serve` CLI, over real loopback HTTP:
//! settings from environment variables, no state store, no trusted client address.

mod common;

use bridge_host::{Flavour, ServeHost, wasm_path};
use common::*;
use serde_json::json;

fn serve(sim: &kraken_sim::Sim, extra: &[(&str, &str)]) -> ServeHost {
    let mut env: Vec<(String, String)> = settings(sim)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ServeHost::builder(wasm_path(Flavour::Wasi))
        .envs(env)
        .start()
}

fn scan_logs(srv: &ServeHost) {
    let logs = srv.logs();
    for secret in SECRETS {
        assert!(
            !logs.contains(secret),
            "a configured secret leaked into the host's log"
        );
    }
}

#[test]
fn portable_flavour_places_one_order_per_alert() {
    let sim = sim();
    let srv = serve(&sim, &[]);
    for (i, ct) in ["application/json", "text/plain"].iter().enumerate() {
        let body = limit_alert(WEBHOOK_SECRET)
            .replace(r#""side""#, &format!(r#""id":"serve-{i}","side""#));
        let ex = srv.request_blocking(post(body, &[("content-type", ct)]));
        assert_no_secrets(&ex);
        assert_eq!(ex.status, 200, "{ex}");
        assert_eq!(ex.json()["status"], "placed");
    }
    let orders = sim.orders();
    assert_eq!(orders.len(), 2);
    for o in &orders {
        assert_eq!(o.params["volume"], "0.0125");
        assert_eq!(o.params["price"], "37500.5");
        assert_eq!(o.params["pair"], "XBTUSD");
    }
    assert!(
        private_requests(&sim)
            .iter()
            .all(|r| r.signature_valid == Some(true))
    );
    assert!(srv.logs().contains("order_placed"));
    scan_logs(&srv);
}

#[test]
fn portable_flavour_refuses_bad_alerts_and_reports_health() {
    let sim = sim();
    let srv = serve(&sim, &[]);
    let ex = srv.request_blocking(post(
        limit_alert("e2e-webhook-secret-9f3b1c7d2a6e4f81"),
        &[],
    ));
    assert_eq!(
        (ex.status, ex.json()),
        (401, json!({"error":"unauthorized"}))
    );
    let ex = srv.request_blocking(post(
        limit_alert(WEBHOOK_SECRET).replace("0.0125", "-1"),
        &[("content-type", "application/json")],
    ));
    assert_eq!(ex.status, 422);
    let ex = srv.request_blocking(post(
        limit_alert(WEBHOOK_SECRET),
        &[("content-type", "text/html")],
    ));
    assert_eq!(ex.status, 415);
    assert!(sim.requests().is_empty());

    let h = srv.request_blocking(get("/health"));
    assert_eq!(h.status, 200, "{h}");
    let h = h.json();
    assert_eq!(h["flavour"], "wasi");
    assert_eq!(h["state_store"], serde_json::Value::Null);
    assert_eq!(srv.request_blocking(get("/nope")).status, 404);
    scan_logs(&srv);
}

#[test]
fn portable_flavour_never_trusts_spin_client_addr() {
    let sim = sim();
    let srv = serve(&sim, &[]);
    let ex = srv.request_blocking(post(
        limit_alert("e2e-webhook-secret-9f3b1c7d2a6e4f81"),
        &[("spin-client-addr", "52.89.214.238:1")],
    ));
    assert_eq!(ex.status, 401);
    let logs = srv.logs();
    assert!(logs.contains("auth_failed"), "{logs}");
    assert!(
        !logs.contains("52.89.214.238"),
        "a client-sent address reached the audit log"
    );
    assert!(logs.contains(r#""client_addr":null"#));
}

#[test]
fn portable_flavour_reads_settings_from_upper_case_environment() {
    let sim = sim();
    let srv = serve(&sim, &[("TRADING_ENABLED", "false")]);
    let ex = srv.request_blocking(post(limit_alert(WEBHOOK_SECRET), &[]));
    assert_eq!(
        (ex.status, ex.json()),
        (423, json!({"error":"trading_disabled"}))
    );
    let srv = serve(&sim, &[("WEBHOOK_SECRET", "too-short")]);
    let h = srv.request_blocking(get("/health"));
    assert_eq!(h.status, 503);
    assert_eq!(h.json()["problems"][0]["setting"], "webhook_secret");
    assert!(sim.requests().is_empty());
}

#[test]
fn portable_flavour_allow_list_needs_a_proxy_header() {
    let sim = sim();
    // No trustworthy address at all: deny.
    let srv = serve(&sim, &[("ALLOWED_IPS", "127.0.0.1")]);
    let ex = srv.request_blocking(post(
        limit_alert(WEBHOOK_SECRET),
        &[("spin-client-addr", "127.0.0.1:1")],
    ));
    assert_eq!((ex.status, ex.json()), (403, json!({"error":"forbidden"})));
    // Behind a proxy that overwrites X-Real-IP.
    let srv = serve(
        &sim,
        &[
            ("ALLOWED_IPS", "52.89.214.238"),
            ("CLIENT_IP_HEADER", "x-real-ip"),
        ],
    );
    let ex = srv.request_blocking(post(
        limit_alert(WEBHOOK_SECRET),
        &[("x-real-ip", "52.89.214.238")],
    ));
    assert_eq!(ex.status, 200, "{ex}");
    let ex = srv.request_blocking(post(
        limit_alert(WEBHOOK_SECRET),
        &[("x-real-ip", "52.89.214.239")],
    ));
    assert_eq!(ex.status, 403);
    assert_eq!(sim.orders().len(), 1);
}
