//! Accounts (contract 2.7) with the real component: the Spin flavour in the embedded host and
//! the portable build under the real `wasmtime serve`, trading on a simulator with two Kraken
//! accounts. The fleet tests (one `id` to two accounts at once) are in `fleet.rs`; a real
//! `spin up` serving accounts is in `deploy.rs`.

mod common;

use bridge_host::{Exchange, SpinHost};
use common::*;
use kraken_sim::Sim;
use serde_json::{Value, json};

fn spin(sim: &Sim) -> SpinHost {
    spin_host(sim, &[("kraken_accounts", &accounts_setting())])
}

/// The orders booked on each Kraken account of [`accounts_sim`]: (default, swing).
fn booked(sim: &Sim) -> (usize, usize) {
    let orders = sim.orders();
    let on = |key: &str| orders.iter().filter(|o| o.api_key == key).count();
    (on(API_KEY), on(SWING_API_KEY))
}

fn audit(ex: &Exchange) -> Vec<Value> {
    ex.stdout
        .lines()
        .chain(ex.stderr.lines())
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A market buy of `volume` with `id`, authenticated with `secret`, sent to `path`.
fn buy(host: &SpinHost, path: &str, secret: &str, id: &str, volume: &str) -> Exchange {
    send(
        host,
        post_to(path, market_alert_with(secret, id, volume), &[]),
    )
}

/// What a caller sees of an answer: status, body, and every header but `x-request-id`.
fn seen(ex: &Exchange) -> (u16, String, Vec<(String, String)>) {
    let mut headers: Vec<(String, String)> = ex
        .headers
        .iter()
        .filter(|(k, _)| k.as_str() != "x-request-id" && k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    headers.sort();
    (ex.status, ex.text(), headers)
}

#[test]
fn each_account_trades_with_its_own_keys_limits_and_records() {
    let sim = accounts_sim();
    let host = spin(&sim);
    // swing: its own Kraken account.
    let ex = buy(&host, "/webhook/swing", SWING_SECRET, "acct-1", "0.001");
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(ex.json()["status"], "placed");
    assert_eq!(
        ex.json()["cl_ord_id"],
        cl_ord_id_in("swing", "acct-1").as_str()
    );
    let lines = audit(&ex);
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l["account"] == "swing"),
        "{ex}"
    );
    assert_eq!(booked(&sim), (0, 1));
    // The same id to the default account: another alert, on the default Kraken account.
    let ex = buy(&host, "/webhook", WEBHOOK_SECRET, "acct-1", "0.001");
    assert_eq!(ex.json()["status"], "placed", "{ex}");
    assert_eq!(ex.json()["cl_ord_id"], cl_ord_id_for_id("acct-1").as_str());
    assert!(
        audit(&ex).iter().all(|l| l.get("account").is_none()),
        "{ex}"
    );
    assert_eq!(booked(&sim), (1, 1));
    // Resent to swing: swing's duplicate.
    let ex = buy(&host, "/webhook/swing", SWING_SECRET, "acct-1", "0.001");
    assert_eq!(ex.json()["status"], "duplicate", "{ex}");
    assert_eq!(booked(&sim), (1, 1));
    // swing's cap: 0.1 XBT at the simulator's 67,000 is over its 5,000; the default has none.
    let ex = buy(&host, "/webhook/swing", SWING_SECRET, "acct-2", "0.1");
    assert_eq!(ex.status, 422, "{ex}");
    let ex = buy(&host, "/webhook", WEBHOOK_SECRET, "acct-2", "0.1");
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(booked(&sim), (2, 1));
    // paper: a dry run on the top level's keys; scalp: switched off.
    let ex = buy(&host, "/webhook/paper", PAPER_SECRET, "acct-3", "0.001");
    assert_eq!(ex.status, 200, "{ex}");
    let validated = private_requests(&sim)
        .into_iter()
        .filter(|r| r.method.as_deref() == Some("AddOrder"))
        .any(|r| {
            r.params.get("validate").map(String::as_str) == Some("true")
                && r.api_key.as_deref() == Some(API_KEY)
        });
    assert!(validated, "{ex}");
    let ex = buy(&host, "/webhook/scalp", SCALP_SECRET, "acct-4", "0.001");
    assert_eq!(ex.status, 423, "{ex}");
    assert_eq!(audit(&ex)[0]["account"], "scalp");
    assert_eq!(booked(&sim), (2, 1), "nothing more placed");
    // /health names each account and its key count.
    let ex = send(&host, get("/health"));
    assert_eq!(ex.status, 200, "{ex}");
    let names: Vec<_> = ex.json()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].clone(),
                a["usable"].clone(),
                a["kraken_keys"].clone(),
            )
        })
        .collect();
    assert_eq!(names.len(), 3, "{ex}");
    assert!(
        names.contains(&(json!("swing"), json!(true), json!(1))),
        "{ex}"
    );
}

#[test]
fn an_unknown_account_or_another_accounts_secret_is_a_wrong_secret_on_the_wire() {
    let sim = accounts_sim();
    let host = spin(&sim);
    let wrong = send(
        &host,
        post(
            market_alert_with("not-a-secret-of-any-account-012345", "w", "0.001"),
            &[],
        ),
    );
    assert_eq!(wrong.status, 401);
    for (path, secret) in [
        ("/webhook/swing", WEBHOOK_SECRET),
        ("/webhook/swing", PAPER_SECRET),
        ("/webhook", SWING_SECRET),
        ("/webhook/nosuch", SWING_SECRET),
        ("/webhook/nosuch", WEBHOOK_SECRET),
        ("/webhook/NoSuch", SWING_SECRET),
    ] {
        let ex = send(
            &host,
            post_to(path, market_alert_with(secret, "w", "0.001"), &[]),
        );
        assert_eq!(seen(&ex), seen(&wrong), "{path}");
        let lines = audit(&ex);
        assert_eq!(lines.len(), 1, "{ex}");
        assert_eq!(lines[0]["event"], "auth_failed");
    }
    assert!(sim.orders().is_empty());
}

#[test]
fn accounts_on_the_portable_build() {
    let sim = accounts_sim();
    let setting = accounts_setting();
    let srv = serve_host(&sim, &[("KRAKEN_ACCOUNTS", setting.as_str())]);
    let ex = srv.request_blocking(post_to(
        "/webhook/swing",
        market_alert_with(SWING_SECRET, "serve-acct-1", "0.001"),
        &[],
    ));
    assert_no_secrets(&ex);
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(
        ex.json()["cl_ord_id"],
        cl_ord_id_in("swing", "serve-acct-1").as_str()
    );
    let ex = srv.request_blocking(post(
        market_alert_with(WEBHOOK_SECRET, "serve-acct-1", "0.001"),
        &[],
    ));
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(booked(&sim), (1, 1));
    let wrong = srv.request_blocking(post(market_alert_with(SWING_SECRET, "w", "0.001"), &[]));
    let unknown = srv.request_blocking(post_to(
        "/webhook/nosuch",
        market_alert_with(SWING_SECRET, "w", "0.001"),
        &[],
    ));
    assert_eq!(wrong.status, 401);
    assert_eq!(seen(&unknown), seen(&wrong));
    let health = srv.request_blocking(get("/health"));
    assert_eq!(
        health.json()["accounts"].as_array().map(Vec::len),
        Some(3),
        "{health}"
    );
    let logs = srv.logs();
    assert!(logs.contains(r#""account":"swing""#), "{logs}");
    for secret in SECRETS {
        assert!(
            !logs.contains(secret),
            "a configured secret reached the bridge's log"
        );
    }
}
