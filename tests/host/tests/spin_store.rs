//! The state store as the real host runs it (contract 2.4 and 2.5): a store that hangs,
//! is down or is locked costs a `503` inside the budget, never an answer past TradingView's
//! 3 s and never an order after a non-`200` answer; once the store is back, the resend
//! trades once.
//!
//! Two hosts: the embedded Spin emulation (always), and a real Spin 4.0.2 (`spin up` of
//! `spin.local.toml`, the bridge and its store component) on a real Redis and on Spin's
//! default SQLite store, when `spin` and `redis-server` are there (the test says so and
//! skips otherwise).

mod common;

use std::time::{Duration, Instant};

use bridge_host::{
    Flavour, KeyValueStore, RedisServer, SpinUp, http_request, spin_or_skip, wasm_path,
};
use common::*;
use serde_json::Value as Json;

/// Every answer must come inside the budget; a client gives up on it a little later.
const CLIENT_LIMIT: Duration = Duration::from_secs(10);

// ---- the embedded host ----------------------------------------------------------------------

#[test]
fn a_hung_store_costs_a_503_inside_the_budget_and_health_says_so() {
    let sim = sim();
    let store = KeyValueStore::new();
    let host = spin_host_on(&sim, &store, &[]);
    // Every store call hangs for 10 s (longer than any answer may take).
    store.set_stall(Some(Duration::from_secs(10)));
    let ex = send(&host, post(market_alert("hung-1", "0.001"), &[]));
    assert_eq!(ex.status, 503, "{ex}");
    assert!(ex.headers.contains_key("retry-after"), "{ex}");
    assert!(ex.elapsed < BUDGET, "answered after {:?}", ex.elapsed);
    let ex = send(&host, get("/health"));
    assert_eq!(ex.status, 503, "{ex}");
    assert_eq!(ex.json()["status"], "store_unavailable", "{ex}");
    assert!(ex.elapsed < BUDGET, "health after {:?}", ex.elapsed);
    assert!(
        sim.orders().is_empty(),
        "nothing placed while the store hangs"
    );
    // The store answers again: the resend trades, once.
    store.set_stall(None);
    let ex = send(&host, post(market_alert("hung-1", "0.001"), &[]));
    assert_eq!(ex.json()["status"], "placed", "{ex}");
    let ex = send(&host, post(market_alert("hung-1", "0.001"), &[]));
    assert_eq!(ex.json()["status"], "duplicate", "{ex}");
    assert_eq!(orders_with(&sim, &cl_ord_id_for_id("hung-1")).len(), 1);
    let ex = send(&host, get("/health"));
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(ex.json()["store"]["calls"], "bounded", "{ex}");
}

#[test]
fn a_claim_written_after_its_deadline_is_released_and_the_resend_trades() {
    let sim = sim();
    let store = KeyValueStore::new();
    let host = spin_host_on(&sim, &store, &[]);
    // Reads and counters answer, sets land 1.5 s late: the claim's own write lands after
    // the bridge has given up on it (its deadline is the claim window, 1 s).
    store.set_set_stall(Some(Duration::from_millis(1_500)));
    let ex = send(&host, post(market_alert("late-1", "0.001"), &[]));
    assert_eq!(ex.status, 503, "{ex}");
    assert!(ex.elapsed < BUDGET, "answered after {:?}", ex.elapsed);
    // The late write lands, and the store component releases it: the bridge's own release
    // after its answer ran before the write landed, and found nothing to release.
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let landed = store
            .keys()
            .into_iter()
            .find(|k| k.starts_with("dd:") && k.ends_with(":id:late-1"))
            .and_then(|k| store.get(&k));
        if let Some(bytes) = landed {
            let record: Json = serde_json::from_slice(&bytes).unwrap();
            if record["state"] == "released" || Instant::now() > deadline {
                break record;
            }
        }
        assert!(Instant::now() < deadline, "the late claim never landed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(record["state"], "released", "{record}");
    store.set_set_stall(None);
    // The resend is not blocked by the late claim: it trades, once.
    let ex = send(&host, post(market_alert("late-1", "0.001"), &[]));
    assert_eq!(ex.json()["status"], "placed", "{ex}");
    let ex = send(&host, post(market_alert("late-1", "0.001"), &[]));
    assert_eq!(ex.json()["status"], "duplicate", "{ex}");
    assert_eq!(orders_with(&sim, &cl_ord_id_for_id("late-1")).len(), 1);
}

#[test]
fn without_the_store_component_the_bridge_calls_the_store_itself() {
    let sim = sim();
    let store = KeyValueStore::new();
    let host = spin_builder(&sim, &[])
        .kv_store(store.clone())
        .without_store_component()
        .build();
    let ex = send(&host, get("/health"));
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(ex.json()["store"]["calls"], "direct", "{ex}");
    let ex = send(&host, post(market_alert("direct-1", "0.001"), &[]));
    assert_eq!(ex.json()["status"], "placed", "{ex}");
    let ex = send(&host, post(market_alert("direct-1", "0.001"), &[]));
    assert_eq!(ex.json()["status"], "duplicate", "{ex}");
    assert!(store.keys().iter().any(|k| k.ends_with(":id:direct-1")));
}

#[test]
fn the_store_component_is_not_reachable_from_outside() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    let request =
        r#"{"op":{"get":"health:probe"},"limit":{"deadline_ms":99999999999999,"on_late":null}}"#;
    let ex = send(&host, post(request, &[]));
    assert_ne!(ex.status, 200, "{ex}");
    let mut req = post(request, &[]);
    *req.uri_mut() = "/.store".parse().unwrap();
    let ex = send(&host, req);
    assert_eq!(
        ex.status, 404,
        "the public component does not serve the store: {ex}"
    );
}

// ---- a real Spin ----------------------------------------------------------------------------

/// A real Spin and what it needs, or why the test skips.
fn real_spin(test: &str, redis: bool) -> Option<std::path::PathBuf> {
    let spin = spin_or_skip(test)?;
    if redis && !RedisServer::available() {
        eprintln!("skipped {test}: redis-server is not installed");
        return None;
    }
    wasm_path(Flavour::Spin);
    Some(spin)
}

fn redis_config(server: &RedisServer) -> String {
    format!(
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
        server.url()
    )
}

/// Sends an alert (or `/health`) to a real Spin; every answer must come inside the budget.
fn ask(up: &SpinUp, method: &str, path: &str, body: &str) -> (u16, Json, Duration) {
    let (status, text, elapsed) = http_request(up.addr, method, path, body, CLIENT_LIMIT)
        .unwrap_or_else(|| panic!("no answer within {CLIENT_LIMIT:?}:\n{}", up.output()));
    assert!(
        elapsed < BUDGET,
        "{method} {path} answered {status} after {elapsed:?}:\n{text}"
    );
    for secret in SECRETS {
        assert!(!text.contains(secret), "a secret in an answer");
    }
    let json = serde_json::from_str(&text).unwrap_or(Json::Null);
    (status, json, elapsed)
}

/// While the store is out: alerts and `/health` answer `503` inside the budget, and
/// nothing is placed. Returns the slowest answer.
fn out_of_service(up: &SpinUp, sim: &kraken_sim::Sim, ids: &[&str]) -> Duration {
    let before = sim.orders().len();
    let mut slowest = Duration::ZERO;
    for id in ids {
        let (status, body, elapsed) = ask(up, "POST", "/webhook", &market_alert(id, "0.001"));
        assert_eq!(status, 503, "{id}: {body}\n{}", up.output());
        slowest = slowest.max(elapsed);
    }
    let (status, body, elapsed) = ask(up, "GET", "/health", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "store_unavailable", "{body}");
    slowest = slowest.max(elapsed);
    assert_eq!(sim.orders().len(), before, "nothing placed after a 503");
    slowest
}

/// Resends `id` every `every` until it is placed (at most `limit`): every answer inside
/// the budget, nothing placed by a non-`200`, exactly one order at the end, and a last
/// resend answered as a duplicate. Returns how long recovery took and how many resends.
fn resend_until_placed(
    up: &SpinUp,
    sim: &kraken_sim::Sim,
    id: &str,
    every: Duration,
    limit: Duration,
) -> (Duration, usize) {
    let cl = cl_ord_id_for_id(id);
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let (status, body, _) = ask(up, "POST", "/webhook", &market_alert(id, "0.001"));
        sent += 1;
        match status {
            200 => {
                assert_eq!(body["status"], "placed", "{body}");
                break;
            }
            503 => assert!(orders_with(sim, &cl).is_empty(), "placed after a 503"),
            other => panic!("{other}: {body}"),
        }
        assert!(
            started.elapsed() < limit,
            "{id} not placed within {limit:?}:\n{}",
            up.output()
        );
        std::thread::sleep(every);
    }
    let recovered = started.elapsed();
    let (status, body, _) = ask(up, "POST", "/webhook", &market_alert(id, "0.001"));
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(orders_with(sim, &cl).len(), 1, "exactly one order");
    (recovered, sent)
}

/// A real `spin up` on `sim`, with the store of `runtime_config` (`None`: the default
/// SQLite store), which has placed one alert: the store works before the test breaks it.
fn up_and_trading(
    spin: &std::path::Path,
    sim: &kraken_sim::Sim,
    runtime_config: Option<&str>,
) -> SpinUp {
    let up = SpinUp::start(spin, &sim.url(), &settings(sim), runtime_config).unwrap();
    let (status, body, _) = ask(&up, "POST", "/webhook", &market_alert("before", "0.001"));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("placed")),
        "{body}"
    );
    up
}

#[test]
fn on_a_real_spin_a_hung_redis_costs_503s_and_the_resend_trades_once() {
    let test = "on_a_real_spin_a_hung_redis_costs_503s_and_the_resend_trades_once";
    let Some(spin) = real_spin(test, true) else {
        return;
    };
    let sim = sim();
    let redis = RedisServer::start().unwrap();
    let up = up_and_trading(&spin, &sim, Some(&redis_config(&redis)));

    redis.pause();
    let slowest = out_of_service(&up, &sim, &["hung-1", "hung-2"]);
    redis.resume();
    let (recovered, resends) = resend_until_placed(
        &up,
        &sim,
        "hung-1",
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    eprintln!(
        "{test}: slowest answer while hung {slowest:?}; after SIGCONT, placed after {recovered:?} \
         ({resends} resends)"
    );
}

#[test]
fn on_a_real_spin_a_killed_redis_costs_503s_and_the_resend_trades_once() {
    let test = "on_a_real_spin_a_killed_redis_costs_503s_and_the_resend_trades_once";
    let Some(spin) = real_spin(test, true) else {
        return;
    };
    let sim = sim();
    let mut redis = RedisServer::start().unwrap();
    let up = up_and_trading(&spin, &sim, Some(&redis_config(&redis)));

    redis.stop();
    let slowest = out_of_service(&up, &sim, &["killed-1", "killed-2"]);
    redis.restart().unwrap();
    // Spin's Redis client reconnects on its own schedule (a backoff of seconds, then a
    // minute or more): until it has, every alert still answers 503 inside the budget.
    let (recovered, resends) = resend_until_placed(
        &up,
        &sim,
        "killed-1",
        Duration::from_secs(2),
        Duration::from_secs(300),
    );
    eprintln!(
        "{test}: slowest answer while down {slowest:?}; after the restart, placed after \
         {recovered:?} ({resends} resends)"
    );
}

#[test]
fn on_a_real_spin_a_locked_sqlite_store_costs_503s_and_the_resend_trades_once() {
    let test = "on_a_real_spin_a_locked_sqlite_store_costs_503s_and_the_resend_trades_once";
    let Some(spin) = real_spin(test, false) else {
        return;
    };
    let Some(python) = ["python3", "python"].into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import sqlite3"])
            .status()
            .is_ok_and(|s| s.success())
    }) else {
        eprintln!("skipped {test}: no python3 with sqlite3 to lock the store with");
        return;
    };
    let sim = sim();
    let up = up_and_trading(&spin, &sim, None);

    // Another process holds the database's exclusive lock for 8 s (rusqlite in Spin waits
    // up to 5 s per lock, then fails).
    let db = up.sqlite_path();
    assert!(db.is_file(), "{}", db.display());
    let mut locker = std::process::Command::new(python)
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(8)\n\
             c.execute('ROLLBACK')",
        ])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let slowest = out_of_service(&up, &sim, &["locked-1", "locked-2"]);
    locker.wait().unwrap();
    let (recovered, resends) = resend_until_placed(
        &up,
        &sim,
        "locked-1",
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    eprintln!(
        "{test}: slowest answer while locked {slowest:?}; after the lock, placed after \
         {recovered:?} ({resends} resends)"
    );
}

/// Redis's own count of the commands one alert cost, by name.
fn commands(redis: &RedisServer) -> std::collections::BTreeMap<String, u64> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .filter(|(name, _)| !["info", "ping", "config"].contains(&name.as_str()))
        .collect()
}

fn delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[test]
fn on_a_real_spin_an_accepted_alert_makes_few_store_calls() {
    let test = "on_a_real_spin_an_accepted_alert_makes_few_store_calls";
    let Some(spin) = real_spin(test, true) else {
        return;
    };
    let sim = sim();
    let redis = RedisServer::start().unwrap();
    let up = SpinUp::start(
        &spin,
        &sim.url(),
        &settings(&sim),
        Some(&redis_config(&redis)),
    )
    .unwrap();
    // The pair is cached by the first alert.
    let (status, _, _) = ask(&up, "POST", "/webhook", &market_alert("warm", "0.001"));
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let mut totals = Vec::new();
    for i in 0..8 {
        let before = commands(&redis);
        let id = format!("count-{i}");
        let (status, body, _) = ask(&up, "POST", "/webhook", &market_alert(&id, "0.001"));
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("placed")),
            "{body}"
        );
        // The writes after the answer.
        std::thread::sleep(Duration::from_millis(300));
        let accepted = delta(&before, &commands(&redis));
        let before = commands(&redis);
        let (status, body, _) = ask(&up, "POST", "/webhook", &market_alert(&id, "0.001"));
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("duplicate")),
            "{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let duplicate = delta(&before, &commands(&redis));
        eprintln!("{test}: accepted {accepted:?}; duplicate {duplicate:?}");
        assert_eq!(
            duplicate.values().sum::<u64>(),
            1,
            "a duplicate reads one key"
        );
        // An alert that ran the pruning pass after its answer (one in eight) is left out.
        if !accepted.contains_key("keys") && !accepted.contains_key("del") {
            totals.push(accepted.values().sum::<u64>());
        }
    }
    // Before the answer: 2 record reads, the minute's count, the claim, 1 or 2 claim
    // counters, the cached pair (6 or 7); after it, the record (read, write) and, on one
    // alert in eight, the pruning pass (left out here).
    assert!(totals.len() >= 6, "{totals:?}");
    assert!(totals.iter().all(|t| (8..=9).contains(t)), "{totals:?}");
}

/// Position alerts (contract 2.6) on a real Spin: one `spin up` on its default SQLite store,
/// and two `spin up` instances sharing a real Redis. Two different targets for XBTUSD at the
/// same instant, on different instances where there are two, for ten rounds: the holding
/// ends at one of the targets every round, never beyond; a `503` placed nothing and its
/// resend trades.
#[test]
fn on_a_real_spin_position_alerts_take_turns() {
    let Some(spin) = real_spin("on_a_real_spin_position_alerts_take_turns", true) else {
        return;
    };
    let mut server = RedisServer::start().expect("start redis-server");
    let redis = redis_config(&server);
    for (store, count) in [("sqlite", 1), ("redis", 2)] {
        let sim = sim();
        let config = (store == "redis").then_some(redis.as_str());
        let ups: Vec<SpinUp> = (0..count)
            .map(|_| SpinUp::start(&spin, &sim.url(), &settings(&sim), config).unwrap())
            .collect();
        for r in 0..10 {
            sim.set_balance("XXBT", "0.5");
            sim.set_balance("ZUSD", "100000");
            let targets = ["0.2", "0.8"];
            let barrier = std::sync::Barrier::new(2);
            let answers: Vec<(u16, Json)> = std::thread::scope(|s| {
                let jobs: Vec<_> = targets
                    .iter()
                    .enumerate()
                    .map(|(k, t)| {
                        let (up, barrier) = (&ups[k % count], &barrier);
                        let body = position_alert(&format!("{store}-{r}-{k}"), t);
                        s.spawn(move || {
                            barrier.wait();
                            loop {
                                let (status, json, _) = ask(up, "POST", "/webhook", &body);
                                if status != 503 {
                                    return (status, json);
                                }
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        })
                    })
                    .collect();
                jobs.into_iter().map(|j| j.join().unwrap()).collect()
            });
            for (status, json) in &answers {
                assert_eq!(*status, 200, "{store} round {r}: {json}");
            }
            let holding = sim.balance("XXBT").normalize().to_string();
            assert!(
                targets.contains(&holding.as_str()),
                "{store} round {r}: holding {holding}: {answers:?}\n{}",
                ups[0].output()
            );
        }
        assert!(sim.orders().len() <= 20, "{store}");
        eprintln!(
            "real Spin, {store}, {count} instance(s): 10 rounds of two targets at once, the holding at a target every round; {} orders",
            sim.orders().len()
        );
    }
    server.stop();
}
