//! Exactly once (contract 2.4 and 2.5) end to end: the real components against the Kraken
//! simulator with injected faults.
//!
//! * The TradingView resend matrix: the same alert delivered four times per fault; every
//!   answer is checked against the simulator's truth at the moment it arrives, and the
//!   simulator never holds two orders for one alert.
//! * The time budget: whatever Kraken does, every answer arrives inside 2.5 s and is never a
//!   5xx while an order may exist.
//! * Concurrency: many different alerts at once all trade (the same alert at once: `fleet.rs`).

mod common;

use std::time::{Duration, Instant};

use bridge_host::Exchange;
use common::*;
use kraken_sim::{Fault, FaultKind, Sim};

/// AddOrder requests the simulator received for `cl`; each carries the `cl_ord_id` and a
/// `deadline` about 5 s ahead (checked where the request was not held back by a fault).
fn add_orders(sim: &Sim, cl: &str) -> Vec<kraken_sim::RequestRecord> {
    let adds: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method.as_deref() == Some("AddOrder"))
        .filter(|r| r.params.get("cl_ord_id").map(String::as_str) == Some(cl))
        .collect();
    for r in &adds {
        let deadline = r
            .params
            .get("deadline")
            .and_then(|d| kraken_sim::time::parse_rfc3339(d))
            .unwrap_or_else(|| panic!("AddOrder without a valid deadline: {r:?}"));
        if !matches!(r.fault, Some(FaultKind::Delay { .. })) {
            let ahead = deadline - r.time;
            assert!((3.5..=5.5).contains(&ahead), "deadline {ahead} s ahead");
        }
    }
    adds
}

/// The longest time a fault holds a request back, in ms.
fn longest_delay(faults: &[Fault]) -> u64 {
    faults
        .iter()
        .map(|f| match f.kind {
            FaultKind::Delay { ms } | FaultKind::DelayAfterBook { ms } => ms,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Waits until requests held back by faults have reached the exchange.
fn settle(started: Instant, faults: &[Fault]) {
    let delay = longest_delay(faults);
    if delay > 0 {
        let until = started + Duration::from_millis(delay + 1_000);
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
}

fn add(kind: FaultKind) -> Vec<Fault> {
    vec![Fault::on("AddOrder", kind)]
}

fn after_book(error: &str) -> Vec<Fault> {
    add(FaultKind::ErrorAfterBook {
        error: error.into(),
    })
}

fn kraken_error(error: &str) -> Vec<Fault> {
    add(FaultKind::KrakenError {
        error: error.into(),
    })
}

fn http_502() -> Vec<Fault> {
    add(FaultKind::HttpStatus {
        status: 502,
        body: "<html><body>502 Bad Gateway</body></html>".into(),
    })
}

const DELIVERIES: usize = 4;
const NO_LIMIT: (&str, &str) = ("rate_limit_per_minute", "100000");

// ---- 1a. the resend matrix, Spin flavour (state store) -------------------------------------

/// One fault of the matrix on the Spin flavour: a fresh simulator and host, the same alert
/// delivered four times in a row.
///
/// `first`: the acceptable kinds of the first answer; `booked`: orders the exchange holds
/// once everything has landed; `adds`: AddOrder requests the bridge may send in all.
fn spin_resends(name: &str, faults: Vec<Fault>, first: &[&str], booked: usize, adds: usize) {
    spin_resends_of(name, faults, first, booked, adds, None);
}

fn spin_resends_of(
    name: &str,
    faults: Vec<Fault>,
    first: &[&str],
    booked: usize,
    adds: usize,
    body: Option<String>,
) {
    let sim = sim();
    let host = spin_host(&sim, &[NO_LIMIT]);
    let id = format!("matrix-{name}");
    let (body, cl) = match body {
        Some(b) => {
            let cl = cl_ord_id_for_body(&b);
            (b, cl)
        }
        None => (market_alert(&id, "0.001"), cl_ord_id_for_id(&id)),
    };
    for f in &faults {
        sim.push_fault(f.clone());
    }
    let started = Instant::now();
    let mut recorded: Option<Answer> = None;
    let mut answers = Vec::new();
    for n in 1..=DELIVERIES {
        let what = format!("{name}, delivery {n}");
        let wall = Instant::now();
        let ex = send(&host, post(body.clone(), &[("content-type", "text/plain")]));
        assert!(wall.elapsed() < BUDGET, "{what}: {:?}", wall.elapsed());
        let answer = read_answer(&ex, &cl);
        check_truth(&sim, &cl, &answer, &ex, &what);
        match &recorded {
            None if n == 1 => assert!(
                first.contains(&answer.kind()),
                "{what}: expected one of {first:?}, got {answer:?}:\n{ex}"
            ),
            // Only a 503 leaves nothing recorded: the resend trades.
            None => assert_eq!(answer.kind(), "placed", "{what}:\n{ex}"),
            Some(first) => assert_eq!(answer, first.as_duplicate(), "{what}:\n{ex}"),
        }
        if recorded.is_none() && answer != Answer::Retryable {
            recorded = Some(answer.clone());
        }
        answers.push(answer);
    }

    settle(started, &faults);
    let orders = orders_with(&sim, &cl);
    assert_eq!(
        orders.len(),
        booked,
        "{name}: answers {answers:?}, booked {orders:#?}"
    );
    assert_eq!(sim.orders().len(), booked, "{name}: orders of other alerts");
    for a in &answers {
        if let Some(txid) = a.claimed_txid() {
            assert_eq!(orders[0].txid, txid, "{name}");
        }
    }
    let sent = add_orders(&sim, &cl);
    assert_eq!(
        sent.len(),
        adds,
        "{name}: AddOrder requests {sent:#?}\nanswers {answers:?}"
    );
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.method.as_deref() == Some("AddOrder"))
            .count(),
        adds,
        "{name}: every AddOrder carries the alert's cl_ord_id"
    );
}

#[test]
fn spin_resends_without_fault() {
    spin_resends("baseline", vec![], &["placed"], 1, 1);
}

#[test]
fn spin_resends_without_fault_body_hash_key() {
    // No `id`: the dedupe key is the body's SHA-256; TradingView resends the same bytes.
    let body = format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","symbol":"XBTUSD","side":"buy","volume":"0.001","comment":"no id"}}"#
    );
    spin_resends_of("body-hash", vec![], &["placed"], 1, 1, Some(body));
}

#[test]
fn spin_resends_drop_before_book() {
    // Nothing booked, no answer: pending; the resends replay pending and place nothing.
    spin_resends(
        "drop-before-book",
        add(FaultKind::DropBeforeBook),
        &["pending"],
        0,
        1,
    );
}

#[test]
fn spin_resends_drop_after_book() {
    spin_resends(
        "drop-after-book",
        add(FaultKind::DropAfterBook),
        &["placed"],
        1,
        1,
    );
}

#[test]
fn spin_resends_drop_after_book_body_hash_key() {
    let body = format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","symbol":"XBTUSD","side":"sell","volume":"0.001"}}"#
    );
    spin_resends_of(
        "drop-after-book-body-hash",
        add(FaultKind::DropAfterBook),
        &["placed"],
        1,
        1,
        Some(body),
    );
}

#[test]
fn spin_resends_http_502_before_booking() {
    spin_resends("http-502", http_502(), &["pending"], 0, 1);
}

#[test]
fn spin_resends_unavailable_after_book() {
    spin_resends(
        "unavailable-after-book",
        after_book("EService:Unavailable"),
        &["placed"],
        1,
        1,
    );
}

#[test]
fn spin_resends_busy_after_book() {
    spin_resends(
        "busy-after-book",
        after_book("EService:Busy"),
        &["placed"],
        1,
        1,
    );
}

#[test]
fn spin_resends_internal_error_after_book() {
    spin_resends(
        "internal-error-after-book",
        after_book("EGeneral:Internal error"),
        &["placed"],
        1,
        1,
    );
}

#[test]
fn spin_resends_deadline_elapsed_not_booked() {
    // Kraken says the deadline passed: certainly absent once the look-up agrees, so the
    // bridge sends once more, with the same cl_ord_id.
    spin_resends(
        "deadline-elapsed",
        kraken_error("EService:Deadline elapsed"),
        &["placed"],
        1,
        2,
    );
}

#[test]
fn spin_resends_deadline_elapsed_but_booked() {
    // A lying "Deadline elapsed" after booking: the look-up must find the order rather than
    // trusting the error and sending again.
    spin_resends(
        "deadline-elapsed-after-book",
        after_book("EService:Deadline elapsed"),
        &["placed"],
        1,
        1,
    );
}

#[test]
fn spin_resends_answer_after_the_time_out() {
    // Booked at once, answered after the bridge gave up: the look-up (if time allows) finds
    // it, otherwise pending; never a second order.
    spin_resends(
        "delay-after-book",
        add(FaultKind::DelayAfterBook { ms: 4_000 }),
        &["placed", "pending"],
        1,
        1,
    );
}

#[test]
fn spin_resends_request_lands_after_the_client_gave_up() {
    // The AddOrder reaches the engine 4 s late, inside its 5 s deadline: it books after the
    // bridge answered pending, and the resends must not add a second one.
    spin_resends(
        "delay",
        add(FaultKind::Delay { ms: 4_000 }),
        &["pending"],
        1,
        1,
    );
}

#[test]
fn spin_resends_nonce_consumed_without_answer() {
    spin_resends(
        "consume-nonce-no-answer",
        add(FaultKind::ConsumeNonceNoAnswer),
        &["pending"],
        0,
        1,
    );
}

#[test]
fn spin_resends_invalid_nonce_on_a_clean_attempt() {
    // A clean refusal: retried at once with a fresh nonce.
    spin_resends(
        "invalid-nonce",
        kraken_error("EAPI:Invalid nonce"),
        &["placed"],
        1,
        2,
    );
}

#[test]
fn spin_resends_rate_limited() {
    // 503 with retry-after and nothing placed; the claim is dropped, so the resend trades.
    spin_resends("rate-limit", add(FaultKind::RateLimit), &["503"], 1, 2);
}

// ---- 1a. the resend matrix, portable flavour (no store: Kraken look-ups dedupe) ------------

/// One fault on the portable flavour under `wasmtime serve`: every delivery looks the
/// cl_ord_id up first, so a later delivery is a duplicate exactly when the exchange holds
/// the order, and trades otherwise.
fn serve_resends(name: &str, faults: Vec<Fault>, first: &[&str]) {
    let sim = sim();
    let srv = serve_host(&sim, &[("RATE_LIMIT_PER_MINUTE", "100000")]);
    let id = format!("serve-matrix-{name}");
    let body = market_alert(&id, "0.001");
    let cl = cl_ord_id_for_id(&id);
    for f in &faults {
        sim.push_fault(f.clone());
    }
    let started = Instant::now();
    let mut answers = Vec::new();
    for n in 1..=DELIVERIES {
        let what = format!("portable {name}, delivery {n}");
        let before = orders_with(&sim, &cl);
        let ex = srv.request_blocking(post(body.clone(), &[("content-type", "text/plain")]));
        let answer = read_answer(&ex, &cl);
        check_truth(&sim, &cl, &answer, &ex, &what);
        if n == 1 {
            assert!(
                first.contains(&answer.kind()),
                "{what}: expected one of {first:?}, got {answer:?}:\n{ex}\n{}",
                srv.logs()
            );
        } else if let Some(o) = before.first() {
            let expected = Answer::Duplicate {
                outcome: "placed".into(),
                txid: Some(o.txid.clone()),
            };
            assert_eq!(answer, expected, "{what}:\n{ex}");
        } else {
            assert_eq!(answer.kind(), "placed", "{what}:\n{ex}");
        }
        answers.push(answer);
    }
    settle(started, &faults);
    let orders = orders_with(&sim, &cl);
    assert_eq!(orders.len(), 1, "{name}: answers {answers:?}");
    assert_eq!(sim.orders().len(), 1);
    for a in &answers {
        if let Some(txid) = a.claimed_txid() {
            assert_eq!(orders[0].txid, txid, "{name}");
        }
    }
    // The look-up comes before every AddOrder.
    let requests = sim.requests();
    for (i, r) in requests.iter().enumerate() {
        if r.method.as_deref() == Some("AddOrder") {
            assert!(
                requests[..i]
                    .iter()
                    .any(|l| l.method.as_deref() == Some("ClosedOrders")
                        && l.params.get("cl_ord_id") == Some(&cl)),
                "{name}: AddOrder without a look-up first"
            );
        }
    }
    add_orders(&sim, &cl);
    for secret in SECRETS {
        assert!(!srv.logs().contains(secret), "a secret leaked into the log");
    }
}

#[test]
fn serve_resends_without_fault() {
    serve_resends("baseline", vec![], &["placed"]);
}

#[test]
fn serve_resends_drop_after_book() {
    serve_resends(
        "drop-after-book",
        add(FaultKind::DropAfterBook),
        &["placed"],
    );
}

#[test]
fn serve_resends_unavailable_after_book() {
    serve_resends(
        "unavailable-after-book",
        after_book("EService:Unavailable"),
        &["placed"],
    );
}

#[test]
fn serve_resends_http_502_before_booking() {
    serve_resends("http-502", http_502(), &["pending"]);
}

#[test]
fn serve_resends_answer_after_the_time_out() {
    serve_resends(
        "delay-after-book",
        add(FaultKind::DelayAfterBook { ms: 4_000 }),
        &["placed", "pending"],
    );
}

#[test]
fn serve_resends_request_lands_after_the_client_gave_up() {
    // The first AddOrder reaches the engine 4 s late, after the bridge answered pending and
    // after a resend's look-ups found nothing and it traded. A closed market order does not
    // block its cl_ord_id: what stops the late one is its nonce, older than the resend's
    // (a nonce window of 0, as the README tells operators).
    serve_resends("delay", add(FaultKind::Delay { ms: 4_000 }), &["pending"]);
}

#[test]
fn serve_resends_rate_limited() {
    serve_resends("rate-limit", add(FaultKind::RateLimit), &["503"]);
}

// ---- 1b. the time budget ----------------------------------------------------------------------

/// What the budget cases inject: Kraken slow on AddOrder, on its answer, on the look-ups.
fn budget_cases(portable: bool) -> Vec<(&'static str, Vec<Fault>)> {
    let delay = |method: &str, ms| Fault::on(method, FaultKind::Delay { ms });
    let mut cases = vec![
        ("AddOrder delayed 10 s", vec![delay("AddOrder", 10_000)]),
        (
            "AddOrder answered 10 s after booking",
            add(FaultKind::DelayAfterBook { ms: 10_000 }),
        ),
    ];
    if portable {
        // The look-up comes first: a slow one leaves no time to send.
        cases.push((
            "look-up before sending delayed",
            vec![delay("OpenOrders", 10_000)],
        ));
        cases.push((
            "slow look-ups before, unavailable, slow look-up after",
            vec![
                delay("OpenOrders", 700),
                delay("ClosedOrders", 700),
                Fault::on(
                    "AddOrder",
                    FaultKind::ErrorAfterBook {
                        error: "EService:Unavailable".into(),
                    },
                ),
                delay("OpenOrders", 10_000),
            ],
        ));
    } else {
        cases.push((
            "unavailable after booking, look-up delayed",
            vec![
                Fault::on(
                    "AddOrder",
                    FaultKind::ErrorAfterBook {
                        error: "EService:Unavailable".into(),
                    },
                ),
                delay("OpenOrders", 10_000),
            ],
        ));
        cases.push((
            "dropped after booking, both look-ups slow",
            vec![
                Fault::on("AddOrder", FaultKind::DropAfterBook),
                delay("OpenOrders", 1_500),
                delay("ClosedOrders", 10_000),
            ],
        ));
        cases.push((
            "deadline elapsed, slow look-ups, slow resend",
            vec![
                Fault::on(
                    "AddOrder",
                    FaultKind::KrakenError {
                        error: "EService:Deadline elapsed".into(),
                    },
                ),
                delay("OpenOrders", 800),
                delay("ClosedOrders", 800),
                delay("AddOrder", 10_000),
            ],
        ));
    }
    cases
}

/// A budget answer: inside 2.5 s on both clocks, and 200/202, or a 503 only when nothing
/// was sent and nothing exists.
fn check_budget(sim: &Sim, cl: &str, ex: &Exchange, wall: Duration, what: &str) {
    assert!(wall < BUDGET, "{what}: answered after {wall:?}:\n{ex}");
    let answer = read_answer(ex, cl);
    check_truth(sim, cl, &answer, ex, what);
    match &answer {
        Answer::Placed(_) | Answer::Pending | Answer::Duplicate { .. } => {}
        Answer::Retryable => {
            assert!(
                add_orders(sim, cl).is_empty(),
                "{what}: 503 after an AddOrder was sent:\n{ex}"
            );
        }
        Answer::Rejected(_) | Answer::Validated => panic!("{what}: {answer:?}:\n{ex}"),
    }
    eprintln!("budget: {what}: {} in {:?}", ex.status, ex.elapsed);
}

#[test]
fn spin_answers_inside_the_budget_whatever_kraken_does() {
    for (i, (what, faults)) in budget_cases(false).into_iter().enumerate() {
        let sim = sim();
        let host = spin_host(&sim, &[NO_LIMIT]);
        for f in faults {
            sim.push_fault(f);
        }
        let id = format!("budget-spin-{i}");
        let cl = cl_ord_id_for_id(&id);
        let wall = Instant::now();
        let ex = host.handle_blocking(post(market_alert(&id, "0.001"), &[]));
        let wall = wall.elapsed();
        check_budget(&sim, &cl, &ex, wall, what);
    }
}

#[test]
fn serve_answers_inside_the_budget_whatever_kraken_does() {
    for (i, (what, faults)) in budget_cases(true).into_iter().enumerate() {
        let sim = sim();
        let srv = serve_host(&sim, &[("RATE_LIMIT_PER_MINUTE", "100000")]);
        for f in faults {
            sim.push_fault(f);
        }
        let id = format!("budget-serve-{i}");
        let cl = cl_ord_id_for_id(&id);
        let wall = Instant::now();
        let ex = srv.request_blocking(post(market_alert(&id, "0.001"), &[]));
        // `request_blocking` waits 30 ms after the answer for the log pipes to catch up.
        let wall = wall.elapsed().saturating_sub(Duration::from_millis(30));
        check_budget(&sim, &cl, &ex, wall, what);
    }
}

// ---- 1c. concurrency ------------------------------------------------------------------------

// Simultaneous deliveries of one alert, on one instance and on a fleet sharing a store, with
// market orders that fill at once: `fleet.rs`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_different_alerts_at_once_all_trade() {
    const N: usize = 20;
    let sim = sim();
    let host = spin_host(&sim, &[NO_LIMIT]);
    let ids: Vec<String> = (0..N).map(|i| format!("bar-close-{i}")).collect();
    let bodies: Vec<String> = ids.iter().map(|id| market_alert(id, "0.0001")).collect();
    // At the same instant; a 503 (a claim that missed its window on a loaded machine) is
    // resent as TradingView resends it, and must have placed nothing.
    let jobs = bodies
        .into_iter()
        .map(|body| deliver_like_tradingview(vec![host.clone()], 0, body))
        .collect();
    let chains = at_the_same_instant(jobs).await;
    let mut resent = 0;
    for (id, chain) in ids.iter().zip(&chains) {
        let cl = cl_ord_id_for_id(id);
        let (last, refused) = chain.split_last().unwrap();
        for ex in refused {
            let answer = read_answer(ex, &cl);
            assert_eq!(answer, Answer::Retryable, "{id}:\n{ex}");
        }
        resent += usize::from(!refused.is_empty());
        let answer = read_answer(last, &cl);
        check_truth(&sim, &cl, &answer, last, id);
        assert_eq!(answer.kind(), "placed", "{id}:\n{last}");
    }
    let orders = sim.orders();
    assert_eq!(orders.len(), N);
    let mut cls: Vec<_> = orders.iter().filter_map(|o| o.cl_ord_id.clone()).collect();
    cls.sort();
    cls.dedup();
    assert_eq!(cls.len(), N, "one order per alert");
    let refused = sim
        .requests()
        .iter()
        .filter(|r| r.errors.iter().any(|e| e == "EAPI:Invalid nonce"))
        .count();
    eprintln!(
        "{N} alerts at once: {refused} nonce refusal(s) retried, {resent} resent after a 503"
    );
}
