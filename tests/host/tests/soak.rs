//! Soak: 1,000 deliveries through the real Spin component against the simulator, over a
//! fleet of four instances sharing one store.
//!
//! 500 distinct alerts, each delivered twice (the second delivery is TradingView's resend),
//! in a shuffled order fixed by a seed, four deliveries at a time, each to the next instance
//! (never two of the same alert at once: TradingView resends one after the other). About a
//! fifth of the AddOrder calls meet a fault. At the end: no alert traded twice, none was
//! lost, and every answer agreed with the exchange when it was given.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_host::{Exchange, SpinHost};
use common::*;
use kraken_sim::{Fault, FaultKind};

const ALERTS: usize = 500;
const DELIVERIES_PER_ALERT: usize = 2;
const AT_ONCE: usize = 4;
const SEED: u64 = 0x5eed_0000_2024_0001;

/// Knuth's MMIX linear congruential generator: enough for a fixed shuffle.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// What an alert asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A market order (fills at once, so it is closed: Kraken's open-order cl_ord_id check
    /// cannot stop a second one).
    Market,
    /// A limit order far below the market (stays open).
    RestingLimit,
    /// More bitcoin than the account holds: Kraken refuses it (`EOrder:Insufficient funds`).
    Unfunded,
    /// `validate: true`: a dry run.
    Validate,
}

struct Alert {
    kind: Kind,
    body: String,
    cl: String,
}

fn alert(i: usize) -> Alert {
    let id = format!("soak-{i:03}");
    let side = if i % 3 == 1 { "sell" } else { "buy" };
    let (kind, rest) = match i {
        _ if i % 25 == 13 => (Kind::Unfunded, r#""volume":"50""#.to_string()),
        _ if i % 50 == 21 => (
            Kind::Validate,
            r#""volume":"0.0001","validate":true"#.into(),
        ),
        _ if i % 10 == 7 => (
            Kind::RestingLimit,
            r#""volume":"0.0001","order_type":"limit","price":"30000.0""#.into(),
        ),
        _ => (Kind::Market, r#""volume":"0.0001""#.into()),
    };
    let side = match kind {
        Kind::RestingLimit => "buy",
        Kind::Unfunded => "sell",
        _ => side,
    };
    Alert {
        kind,
        body: format!(
            r#"{{"secret":"{WEBHOOK_SECRET}","id":"{id}","symbol":"XBTUSD","side":"{side}",{rest},"comment":"soak {i}"}}"#
        ),
        cl: cl_ord_id_for_id(&id),
    }
}

/// The faults, in rotation; every 15th one holds the answer past the bridge's time-out.
fn fault(n: usize) -> Fault {
    let error = |e: &str| e.to_string();
    let kind = if n % 15 == 14 {
        FaultKind::DelayAfterBook { ms: 2_600 }
    } else {
        match n % 9 {
            0 => FaultKind::DropAfterBook,
            1 => FaultKind::ErrorAfterBook {
                error: error("EService:Unavailable"),
            },
            2 => FaultKind::HttpStatus {
                status: 502,
                body: "<html>502 Bad Gateway</html>".into(),
            },
            3 => FaultKind::KrakenError {
                error: error("EAPI:Invalid nonce"),
            },
            4 => FaultKind::RateLimit,
            5 => FaultKind::DropBeforeBook,
            6 => FaultKind::ErrorAfterBook {
                error: error("EGeneral:Internal error"),
            },
            7 => FaultKind::KrakenError {
                error: error("EService:Deadline elapsed"),
            },
            _ => FaultKind::ConsumeNonceNoAnswer,
        }
    };
    Fault::on("AddOrder", kind)
}

/// Splits the delivery sequence into groups sent at once, none holding the same alert
/// twice; a delivery that would is moved to the next group, keeping the order otherwise.
fn groups(sequence: Vec<usize>) -> Vec<Vec<usize>> {
    let mut queue: VecDeque<usize> = sequence.into();
    let mut out = Vec::new();
    while !queue.is_empty() {
        let mut group = Vec::new();
        let mut deferred = Vec::new();
        while group.len() < AT_ONCE {
            let Some(a) = queue.pop_front() else { break };
            if group.contains(&a) {
                deferred.push(a);
            } else {
                group.push(a);
            }
        }
        for a in deferred.into_iter().rev() {
            queue.push_front(a);
        }
        out.push(group);
    }
    out
}

struct Delivery {
    alert: usize,
    nth: usize,
    answer: Answer,
    status: u16,
    events: Vec<String>,
    /// When the answer arrived, Unix seconds (the simulator's `opentm` clock).
    at: f64,
    elapsed: Duration,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

async fn deliver(
    hosts: &[SpinHost],
    bodies: Vec<String>,
    next: &mut usize,
) -> Vec<(Exchange, f64)> {
    let handles: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let host = hosts[*next % hosts.len()].clone();
            *next += 1;
            tokio::spawn(async move {
                let ex = host
                    .handle(post(body, &[("content-type", "text/plain")]))
                    .await;
                (ex, unix_now())
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("delivery task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_1000_deliveries_with_faults_trade_each_alert_at_most_once() {
    let started = Instant::now();
    let sim = sim();
    let store = bridge_host::KeyValueStore::new();
    store.set_op_delay(Duration::from_micros(500));
    let hosts: Vec<SpinHost> = (0..4)
        .map(|_| spin_host_on(&sim, &store, &[("rate_limit_per_minute", "100000")]))
        .collect();
    let mut next = 0;
    let alerts: Vec<Alert> = (0..ALERTS).map(alert).collect();

    let mut rng = Lcg(SEED);
    let mut sequence: Vec<usize> = (0..ALERTS)
        .flat_map(|i| std::iter::repeat_n(i, DELIVERIES_PER_ALERT))
        .collect();
    rng.shuffle(&mut sequence);
    let groups = groups(sequence);

    let mut last: Vec<Option<Answer>> = vec![None; ALERTS];
    let mut delivered = vec![0usize; ALERTS];
    let mut deliveries: Vec<Delivery> = Vec::new();
    let mut faults_pushed = 0;
    for group in &groups {
        // A fault for about a fifth of the deliveries that will send an AddOrder: a first
        // delivery, or a resend after a 503 (every other outcome is replayed from the store).
        for &a in group {
            let sends = matches!(last[a], None | Some(Answer::Retryable));
            if sends && rng.below(5) == 0 {
                sim.push_fault(fault(faults_pushed));
                faults_pushed += 1;
            }
        }
        let bodies = group.iter().map(|&a| alerts[a].body.clone()).collect();
        let results = deliver(&hosts, bodies, &mut next).await;
        // Every answer against the exchange as it stood once the whole group had answered
        // (no other delivery of these alerts was in flight meanwhile).
        let orders = sim.orders();
        for (&a, (ex, at)) in group.iter().zip(results) {
            delivered[a] += 1;
            let what = format!(
                "alert {a} ({:?}), delivery {}",
                alerts[a].kind, delivered[a]
            );
            let answer = read_answer(&ex, &alerts[a].cl);
            check_truth_in(&orders, &alerts[a].cl, &answer, &ex, &what);
            // A recorded outcome is replayed as it was.
            match &last[a] {
                Some(prev) if *prev != Answer::Retryable => {
                    assert_eq!(answer, prev.as_duplicate(), "{what}:\n{ex}");
                }
                _ => {}
            }
            last[a] = Some(answer.clone());
            deliveries.push(Delivery {
                alert: a,
                nth: delivered[a],
                status: ex.status,
                events: prefixed_events(&ex),
                answer,
                at,
                elapsed: ex.elapsed,
            });
        }
    }
    // Answers held back past the time-out land within 2.6 s.
    tokio::time::sleep(Duration::from_millis(2_700)).await;
    let run_time = started.elapsed();

    // ---- the verdict ----------------------------------------------------------------------
    let orders = sim.orders();
    let by_cl: HashMap<&str, usize> = alerts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.cl.as_str(), i))
        .collect();
    let mut booked: HashMap<usize, &kraken_sim::BookedOrder> = HashMap::new();
    for o in &orders {
        let cl = o
            .cl_ord_id
            .as_deref()
            .expect("every order carries a cl_ord_id");
        let &a = by_cl
            .get(cl)
            .unwrap_or_else(|| panic!("order {} of no alert", o.txid));
        // Zero duplicate orders.
        assert!(
            booked.insert(a, o).is_none(),
            "alert {a} traded twice: {:#?}",
            orders_with(&sim, cl)
        );
        assert!(
            matches!(alerts[a].kind, Kind::Market | Kind::RestingLimit),
            "alert {a} ({:?}) must not trade: {o:#?}",
            alerts[a].kind
        );
    }
    assert!(orders.len() <= ALERTS);
    assert_eq!(deliveries.len(), ALERTS * DELIVERIES_PER_ALERT);

    let allowed_events = [
        "order_placed",
        "order_validated",
        "alert_duplicate",
        "order_rejected",
        "order_pending",
    ];
    for (a, alert) in alerts.iter().enumerate() {
        let mine: Vec<&Delivery> = deliveries.iter().filter(|d| d.alert == a).collect();
        assert_eq!(mine.len(), DELIVERIES_PER_ALERT, "alert {a}");
        assert_eq!(mine.last().unwrap().nth, DELIVERIES_PER_ALERT);
        let order = booked.get(&a);
        for d in &mine {
            // Zero lost alerts: every delivery left an audit trail.
            assert!(
                d.events
                    .iter()
                    .any(|e| allowed_events.contains(&e.as_str())),
                "alert {a}, delivery {}: no audit event ({:?})",
                d.nth,
                d.events
            );
            if let Some(txid) = d.answer.claimed_txid() {
                assert_eq!(order.map(|o| o.txid.as_str()), Some(txid), "alert {a}");
            }
            // No 5xx once the order existed.
            if let (true, Some(o)) = (d.status >= 500, order) {
                assert!(
                    d.at < o.opentm,
                    "alert {a}: {} at {} but {} was booked at {}",
                    d.status,
                    d.at,
                    o.txid,
                    o.opentm
                );
            }
        }
        let last = &mine.last().unwrap().answer;
        match last {
            Answer::Retryable => assert!(order.is_none(), "alert {a}: final 503 but booked"),
            Answer::Placed(_) => assert!(order.is_some()),
            Answer::Duplicate { outcome, .. } if outcome == "placed" => assert!(order.is_some()),
            _ => {}
        }
        match alert.kind {
            Kind::Validate => assert!(
                mine.iter()
                    .all(|d| matches!(d.answer.kind(), "validated" | "duplicate" | "503")),
                "alert {a}"
            ),
            Kind::Unfunded => assert!(
                mine.iter().all(|d| matches!(
                    d.answer.kind(),
                    "rejected" | "duplicate" | "pending" | "503"
                )),
                "alert {a}"
            ),
            Kind::Market | Kind::RestingLimit => {
                // Zero lost alerts: traded, or told to the sender as pending or retryable.
                assert!(
                    order.is_some()
                        || matches!(last, Answer::Pending | Answer::Retryable)
                        || *last == Answer::Pending.as_duplicate(),
                    "alert {a} neither traded nor pending nor retryable: {last:?}"
                );
            }
        }
    }

    // ---- the summary ------------------------------------------------------------------------
    let mut per_answer: BTreeMap<String, usize> = BTreeMap::new();
    for d in &deliveries {
        let key = match &d.answer {
            Answer::Duplicate { outcome, .. } => format!("duplicate of {outcome}"),
            Answer::Rejected(e) => format!("rejected {e}"),
            other => other.kind().to_string(),
        };
        *per_answer.entry(key).or_default() += 1;
    }
    let mut per_final: BTreeMap<&str, usize> = BTreeMap::new();
    for l in last.iter().flatten() {
        *per_final.entry(l.kind()).or_default() += 1;
    }
    let requests = sim.requests();
    let adds: Vec<_> = requests
        .iter()
        .filter(|r| r.method.as_deref() == Some("AddOrder"))
        .collect();
    let faulted = adds.iter().filter(|r| r.fault.is_some()).count();
    let pending_booked = (0..ALERTS)
        .filter(|a| booked.contains_key(a))
        .filter(|&a| {
            matches!(last[a], Some(Answer::Pending))
                || last[a] == Some(Answer::Pending.as_duplicate())
        })
        .count();
    let slowest = deliveries.iter().map(|d| d.elapsed).max().unwrap();
    eprintln!(
        "soak: {} deliveries of {ALERTS} alerts in {} groups, {run_time:.1?}",
        deliveries.len(),
        groups.len()
    );
    eprintln!("soak: answers {per_answer:?}");
    eprintln!("soak: final answer per alert {per_final:?}");
    eprintln!(
        "soak: {} orders booked; {faulted} of {} AddOrder requests faulted ({faults_pushed} faults queued); {} look-ups; {pending_booked} pending alerts did trade; slowest answer {slowest:.1?}",
        orders.len(),
        adds.len(),
        requests
            .iter()
            .filter(|r| matches!(r.method.as_deref(), Some("OpenOrders" | "ClosedOrders")))
            .count(),
    );
    // The soak must have been a soak: faults on about a fifth of the AddOrder calls.
    assert!(
        faulted * 100 >= adds.len() * 12,
        "only {faulted} of {} AddOrder calls faulted",
        adds.len()
    );
}
