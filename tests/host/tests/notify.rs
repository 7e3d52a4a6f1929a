//! Notifications (`notify_url`, `notify_format`, `notify_chat_id`) on both flavours, against
//! a loopback receiver that answers, fails or hangs: each order outcome is posted after the
//! answer, in the chosen shape, carrying no secret; a receiver that fails or never answers
//! costs an audit line and nothing else.

mod common;

use bridge_host::{Answer, Exchange, Receiver};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use tv_kraken_bridge::notify::NOTIFY_TIMEOUT_MS;

/// The secret part of the receiver's URL, as in a Discord or Slack webhook URL.
const HOOK_PATH: &str = "/hooks/T000/B000/notify-url-token-4f1e9a";

fn no_hook_token(text: &str) {
    assert!(
        !text.contains("notify-url-token-4f1e9a"),
        "notify_url leaked: {text}"
    );
}

/// What a client and the host's log see of an exchange (not the test host's own record of
/// the outbound requests).
fn seen(ex: &Exchange) -> String {
    let mut seen = format!("{}\n{}\n{}", ex.text(), ex.stdout, ex.stderr);
    for (k, v) in &ex.headers {
        seen.push_str(&format!("\n{k}: {}", String::from_utf8_lossy(v.as_bytes())));
    }
    seen
}

fn line_of(ex: &Exchange, event: &str) -> Value {
    ex.stdout
        .lines()
        .chain(ex.stderr.lines())
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == event)
        .unwrap_or_else(|| panic!("no {event} line in {ex}"))
}

fn spin_notifying(
    sim: &kraken_sim::Sim,
    rx: &Receiver,
    extra: &[(&str, &str)],
) -> bridge_host::SpinHost {
    let url = rx.url(HOOK_PATH);
    let mut settings = vec![("notify_url", url.as_str())];
    settings.extend_from_slice(extra);
    spin_builder(sim, &settings)
        .allow_outbound(rx.origin())
        .build()
}

#[test]
fn spin_posts_each_outcome_in_the_chosen_shape() {
    let sim = sim();
    for (format, chat) in [
        ("json", ""),
        ("discord", ""),
        ("slack", ""),
        ("telegram", "-1001234"),
    ] {
        let rx = Receiver::start(Answer::Status(200));
        let host = spin_notifying(
            &sim,
            &rx,
            &[("notify_format", format), ("notify_chat_id", chat)],
        );
        let ex = send(
            &host,
            post(market_alert(&format!("n-{format}"), "0.001"), &[]),
        );
        assert_eq!(ex.status, 200, "{ex}");
        assert_eq!(ex.json()["status"], "placed");
        no_hook_token(&seen(&ex));
        assert!(!events(&ex).contains(&"notify_failed".to_string()), "{ex}");

        let got = rx.wait_for(1, Duration::from_secs(5));
        assert_eq!(got.len(), 1, "{format}: {got:?}");
        let n = &got[0];
        assert_eq!((n.method.as_str(), n.path.as_str()), ("POST", HOOK_PATH));
        assert_eq!(n.header("content-type"), Some("application/json"));
        let raw = String::from_utf8_lossy(&n.body).into_owned();
        for secret in SECRETS {
            assert!(
                !raw.contains(secret),
                "{format}: a secret in the notification"
            );
        }
        no_hook_token(&raw);
        let body = n.json();
        let text = match format {
            "json" => {
                assert_eq!(body["event"], "order_placed");
                assert_eq!(body["pair"], "XBTUSD");
                assert!(body["txid"][0].is_string(), "{body}");
                continue;
            }
            "discord" => body["content"].as_str(),
            "slack" => body["text"].as_str(),
            _ => {
                assert_eq!(body["chat_id"], "-1001234");
                body["text"].as_str()
            }
        }
        .unwrap_or_else(|| panic!("{format}: {body}"));
        assert!(
            text.starts_with("order_placed: buy 0.001 XBTUSD market · txid"),
            "{format}: {text}"
        );
    }
}

#[test]
fn spin_a_hanging_receiver_delays_no_answer() {
    let sim = sim();
    let rx = Receiver::start(Answer::Hang);
    let host = spin_notifying(&sim, &rx, &[]);
    let ex = send(&host, post(market_alert("n-hang", "0.001"), &[]));
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(ex.json()["status"], "placed");
    // The answer came long before the notification gave up, and the instance lived on.
    assert!(
        ex.elapsed < Duration::from_millis(1_000),
        "answered after {:?}",
        ex.elapsed
    );
    let ended = ex.instance_ended.expect("the Spin host times the instance");
    eprintln!(
        "hanging receiver: answered after {:?}, instance ended after {ended:?}",
        ex.elapsed
    );
    assert!(
        ended >= Duration::from_millis(NOTIFY_TIMEOUT_MS) && ended < BUDGET * 2,
        "the instance ended after {ended:?}"
    );
    assert_eq!(rx.received().len(), 1);
    let failed = line_of(&ex, "notify_failed");
    assert_eq!(failed["reason"], "no_answer");
    assert_eq!(failed["notified_event"], "order_placed");
    assert_eq!(failed["level"], "warn");
    no_hook_token(&seen(&ex));
}

#[test]
fn spin_a_failing_or_forbidden_receiver_is_an_audit_line() {
    let sim = sim();
    let rx = Receiver::start(Answer::Status(500));
    let host = spin_notifying(&sim, &rx, &[("notify_format", "slack")]);
    let ex = send(&host, post(market_alert("n-500", "0.001"), &[]));
    assert_eq!(
        (ex.status, ex.json()["status"].clone()),
        (200, "placed".into()),
        "{ex}"
    );
    let failed = line_of(&ex, "notify_failed");
    assert_eq!(
        (failed["reason"].as_str(), failed["status"].as_u64()),
        (Some("receiver_refused"), Some(500))
    );
    assert_eq!(rx.received().len(), 1);

    // The operator forgot to add the receiver's origin to allowed_outbound_hosts.
    let rx = Receiver::start(Answer::Status(200));
    let url = rx.url(HOOK_PATH);
    let host = spin_host(&sim, &[("notify_url", url.as_str())]);
    let ex = send(&host, post(market_alert("n-denied", "0.001"), &[]));
    assert_eq!(
        (ex.status, ex.json()["status"].clone()),
        (200, "placed".into()),
        "{ex}"
    );
    assert_eq!(line_of(&ex, "notify_failed")["reason"], "unreachable");
    assert!(rx.received().is_empty());
    no_hook_token(&seen(&ex));
}

#[test]
fn spin_refusals_are_notified_and_strangers_never_are() {
    let sim = sim();
    let rx = Receiver::start(Answer::Status(200));
    let host = spin_notifying(&sim, &rx, &[]);
    // Refused by the bridge: below Kraken's ordermin for XBTUSD.
    let ex = send(&host, post(market_alert("n-small", "0.00000001"), &[]));
    assert_eq!(ex.status, 422, "{ex}");
    let got = rx.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["event"], "alert_rejected");
    // Refused by Kraken: more than the account can pay.
    let ex = send(&host, post(market_alert("n-big", "1000"), &[]));
    assert_eq!(ex.status, 422, "{ex}");
    let got = rx.wait_for(2, Duration::from_secs(5));
    assert_eq!(got[1].json()["event"], "order_rejected");
    assert!(
        got[1].json()["kraken_error"]
            .as_str()
            .unwrap()
            .starts_with("EOrder:")
    );
    // A duplicate is not a new outcome; an unauthenticated caller never makes the bridge post.
    let ex = send(&host, post(market_alert("n-small", "0.00000001"), &[]));
    assert_eq!(
        (ex.status, ex.json()["status"].clone()),
        (200, "duplicate".into()),
        "{ex}"
    );
    let wrong = market_alert("n-stranger", "0.001")
        .replace(WEBHOOK_SECRET, "not-the-secret-at-all-0123456789ab");
    let ex = send(&host, post(wrong, &[]));
    assert_eq!(ex.status, 401, "{ex}");
    std::thread::sleep(Duration::from_millis(300));
    let got = rx.received();
    assert_eq!(
        got.iter()
            .map(|r| r.json()["event"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        ["alert_rejected", "order_rejected"]
    );
}

/// The outcomes the other tests do not reach: a dry run, a cancel_all, a stale alert and a
/// rate-limited one; each is posted once, as its own event.
#[test]
fn spin_dry_runs_cancels_stale_and_rate_limited_alerts_are_notified() {
    let sim = sim();
    let rx = Receiver::start(Answer::Status(200));
    let host = spin_notifying(&sim, &rx, &[("rate_limit_per_minute", "2")]);
    let dry = market_alert("n-dry", "0.001").replace('}', r#","validate":true}"#);
    let ex = send(&host, post(dry, &[]));
    assert_eq!(
        (ex.status, ex.json()["status"].clone()),
        (200, "validated".into()),
        "{ex}"
    );
    let cancel =
        format!(r#"{{"secret":"{WEBHOOK_SECRET}","id":"n-cancel","action":"cancel_all"}}"#);
    let ex = send(&host, post(cancel, &[]));
    assert_eq!(
        (ex.status, ex.json()["status"].clone()),
        (200, "cancelled".into()),
        "{ex}"
    );
    let stale = market_alert("n-stale", "0.001").replace('}', r#","timestamp":1000000000}"#);
    let ex = send(&host, post(stale, &[]));
    assert_eq!(ex.status, 401, "{ex}");
    let ex = send(&host, post(market_alert("n-over", "0.001"), &[]));
    assert_eq!(ex.status, 429, "{ex}");

    let got = rx.wait_for(4, Duration::from_secs(5));
    let notified: Vec<String> = got
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        notified,
        [
            "order_validated",
            "orders_cancelled",
            "stale",
            "rate_limited"
        ]
    );
    assert_eq!(got[1].json()["count"], 0);
}

/// Polls the portable host's log until `needle` shows up.
fn log_shows(srv: &bridge_host::ServeHost, needle: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if srv.logs().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn portable_posts_after_the_answer_whatever_the_receiver_does() {
    if bridge_host::find_wasmtime_cli().is_none() {
        eprintln!("skipped: no wasmtime CLI (scripts/test installs it)");
        return;
    }
    let sim = sim();
    // A receiver that takes it.
    let ok = Receiver::start(Answer::Status(204));
    let url = ok.url(HOOK_PATH);
    let srv = serve_host(
        &sim,
        &[("NOTIFY_URL", url.as_str()), ("NOTIFY_FORMAT", "discord")],
    );
    let ex = srv.request_blocking(post(market_alert("np-ok", "0.001"), &[]));
    assert_no_secrets(&ex);
    assert_eq!(
        (ex.status, ex.json()["status"].clone()),
        (200, "placed".into()),
        "{ex}"
    );
    let got = ok.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let content = got[0].json()["content"].as_str().unwrap().to_string();
    assert!(
        content.starts_with("order_placed: buy 0.001 XBTUSD market"),
        "{content}"
    );
    drop(srv);

    // One that hangs, and one that fails.
    for (answer, reason) in [
        (Answer::Hang, "no_answer"),
        (Answer::Status(500), "receiver_refused"),
    ] {
        let rx = Receiver::start(answer);
        let url = rx.url(HOOK_PATH);
        let srv = serve_host(&sim, &[("NOTIFY_URL", url.as_str())]);
        let started = Instant::now();
        let ex = srv.request_blocking(post(market_alert(&format!("np-{reason}"), "0.001"), &[]));
        assert_no_secrets(&ex);
        assert_eq!(
            (ex.status, ex.json()["status"].clone()),
            (200, "placed".into()),
            "{ex}"
        );
        assert!(
            ex.elapsed < Duration::from_millis(1_000),
            "{reason}: answered after {:?}",
            ex.elapsed
        );
        assert!(
            log_shows(
                &srv,
                "notify_failed",
                Duration::from_millis(NOTIFY_TIMEOUT_MS + 3_000)
            ),
            "{reason}: no notify_failed line\n{}",
            srv.logs()
        );
        let logs = srv.logs();
        assert!(logs.contains(&format!("\"reason\":\"{reason}\"")), "{logs}");
        if answer == Answer::Hang {
            assert!(started.elapsed() >= Duration::from_millis(NOTIFY_TIMEOUT_MS));
        }
        assert_eq!(rx.received().len(), 1);
        no_hook_token(&logs);
        for secret in SECRETS {
            assert!(!logs.contains(secret));
        }
    }
}
