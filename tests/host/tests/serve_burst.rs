//! The portable flavour under the real `wasmtime serve` with alerts that arrive together:
//! no state store, so every order is looked up on Kraken first (closed orders only: Kraken
//! refuses a second open order with the same `cl_ord_id` itself). Each alert costs one point
//! of Kraken's REST counter, so a bar close of ten fits a starter-tier key (15).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bridge_host::{Exchange, ServeHost};
use common::*;
use kraken_sim::{RateTier, Sim};

async fn at_once(srv: &Arc<ServeHost>, bodies: Vec<String>) -> Vec<Exchange> {
    let jobs = bodies
        .into_iter()
        .map(|body| {
            let srv = srv.clone();
            async move {
                srv.request(post(body, &[("content-type", "text/plain")]))
                    .await
            }
        })
        .collect();
    at_the_same_instant(jobs).await
}

/// `n` distinct market alerts at once: every one placed at its first delivery.
async fn burst(srv: &Arc<ServeHost>, sim: &Sim, n: usize, tag: &str) -> Duration {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let bodies = ids.iter().map(|id| market_alert(id, "0.0001")).collect();
    let mut slowest = Duration::ZERO;
    for (id, ex) in ids.iter().zip(at_once(srv, bodies).await) {
        let cl = cl_ord_id_for_id(id);
        let answer = read_answer(&ex, &cl);
        assert_eq!(answer.kind(), "placed", "{tag} {id}:\n{ex}");
        assert_eq!(orders_with(sim, &cl).len(), 1);
        slowest = slowest.max(ex.elapsed);
    }
    slowest
}

/// Calls of `method` that Kraken accepted (a call refused for its nonce costs no counter
/// point and is repeated).
fn count(sim: &Sim, method: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method.as_deref() == Some(method))
        .filter(|r| !r.errors.iter().any(|e| e == "EAPI:Invalid nonce"))
        .count()
}

/// 16 distinct alerts at once on a pool of 4 keys (`KRAKEN_API_KEYS`): every one placed
/// once, its look-up and its AddOrder signed with one key of the pool, every key used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portable_burst_over_a_key_pool_spreads_over_every_key() {
    let sim = pool_sim(3);
    let pool = pool_setting(3);
    let srv = Arc::new(serve_host(&sim, &[("KRAKEN_API_KEYS", pool.as_str())]));
    let slowest = burst(&srv, &sim, 16, "serve-pool").await;
    assert_eq!(sim.orders().len(), 16);
    let mut per_key = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for r in sim.requests() {
        let entry = per_key.entry(r.api_key.clone().unwrap_or_default());
        match r.method.as_deref() {
            Some("AddOrder") if r.errors.is_empty() => entry.or_default().0 += 1,
            Some("ClosedOrders") if r.errors.is_empty() => entry.or_default().1 += 1,
            _ => {}
        }
    }
    per_key.remove("");
    assert_eq!(per_key.len(), 4, "{per_key:?}");
    // Each alert's look-up and AddOrder went out with the same key.
    assert!(
        per_key.values().all(|(add, look)| add == look),
        "{per_key:?}"
    );
    eprintln!(
        "16 alerts at once on 4 keys: slowest {slowest:.0?}, (AddOrders, look-ups) per key {:?}",
        per_key.values().collect::<Vec<_>>()
    );
}

/// The same with the first key refused by Kraken (its permissions withdrawn): its alerts'
/// look-ups are refused once and go to the next key, which looks up and places; every alert
/// placed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portable_burst_passes_over_a_refused_key() {
    let sim = pool_sim(3);
    sim.set_permissions([]);
    let pool = pool_setting(3);
    let srv = Arc::new(serve_host(&sim, &[("KRAKEN_API_KEYS", pool.as_str())]));
    burst(&srv, &sim, 16, "serve-refused").await;
    assert_eq!(sim.orders().len(), 16);
    let requests = sim.requests();
    let on_refused: Vec<_> = requests
        .iter()
        .filter(|r| r.api_key.as_deref() == Some(API_KEY))
        .collect();
    assert!(!on_refused.is_empty(), "no alert chose the refused key");
    // Nothing the refused key sends goes through: Kraken checks its nonce (simultaneous
    // requests on one key race for it) and then its permissions.
    for r in &on_refused {
        assert!(
            r.errors == ["EGeneral:Permission denied"] || r.errors == ["EAPI:Invalid nonce"],
            "{:?}: {:?}",
            r.method,
            r.errors
        );
    }
    assert!(
        on_refused
            .iter()
            .any(|r| r.errors == ["EGeneral:Permission denied"]),
        "the refused key was never refused for its permissions"
    );
    let placed = requests
        .iter()
        .filter(|r| r.method.as_deref() == Some("AddOrder") && r.errors.is_empty())
        .count();
    assert_eq!(placed, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portable_bar_close_of_ten_on_a_starter_key_all_trade() {
    let sim = sim();
    sim.set_rate_tier(Some(RateTier::Starter));
    let srv = Arc::new(serve_host(&sim, &[]));
    let slowest = burst(&srv, &sim, 10, "serve-bar").await;
    assert_eq!(sim.orders().len(), 10);
    assert_eq!(sim.rate_limited_count(), 0);
    // One look-up per alert: ten points of the counter's fifteen.
    assert_eq!(count(&sim, "ClosedOrders"), 10);
    assert_eq!(count(&sim, "OpenOrders"), 0);
    eprintln!(
        "portable, bar close of 10 on a starter key: slowest {slowest:.0?}, REST counter {:.1} of 15",
        sim.rest_counter(API_KEY)
    );
    // A resend of one of them is still recognised: the look-up finds it closed.
    let body = market_alert("serve-bar-3", "0.0001");
    let ex = srv.request(post(body, &[])).await;
    assert_eq!(
        read_answer(&ex, &cl_ord_id_for_id("serve-bar-3")).kind(),
        "duplicate"
    );
    assert_eq!(sim.orders().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portable_bursts_of_16_32_and_64_alerts_all_trade() {
    let sim = sim();
    let srv = Arc::new(serve_host(&sim, &[]));
    let mut placed = 0;
    for n in [16, 32, 64] {
        let before = sim
            .requests()
            .iter()
            .filter(|r| r.errors.iter().any(|e| e == "EAPI:Invalid nonce"))
            .count();
        let slowest = burst(&srv, &sim, n, &format!("serve-burst{n}")).await;
        placed += n;
        assert_eq!(sim.orders().len(), placed);
        let refusals = sim
            .requests()
            .iter()
            .filter(|r| r.errors.iter().any(|e| e == "EAPI:Invalid nonce"))
            .count()
            - before;
        eprintln!(
            "portable, {n} alerts at once: slowest {slowest:.0?}, {refusals} nonce refusals retried"
        );
    }
}

#[test]
fn every_outbound_request_carries_content_length() {
    let sim = sim();
    let srv = serve_host(&sim, &[]);
    let ex = srv.request_blocking(post(market_alert("framed", "0.0001"), &[]));
    assert_eq!(
        read_answer(&ex, &cl_ord_id_for_id("framed")).kind(),
        "placed"
    );
    let private = private_requests(&sim);
    assert!(private.len() >= 2);
    for r in &private {
        assert!(!r.chunked, "{:?} was sent chunked", r.method);
        assert!(
            r.content_length.is_some_and(|n| n > 0),
            "{:?} without Content-Length",
            r.method
        );
    }
}
