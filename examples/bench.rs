//! Speed of the sans-IO core, as ratios against a floor measured in the same run.
//!
//! The floor is what any bridge must do with an alert: parse its JSON. The measured paths run
//! the whole handler up to the signed AddOrder (authenticate, parse, validate, the dedupe
//! claim against an in-memory store, pair resolution, planning, signing), with Kraken's
//! answers served from a pair list of Kraken's real size when one is given:
//!
//! ```text
//! cargo run --release --example bench -- ITERATIONS [ASSET_PAIRS.json]
//! ```
//!
//! `scripts/bench` writes that list with the simulator (`kraken-sim --print-asset-pairs 808`).
//! Each case reports the Kraken calls an alert makes, the bytes it reads from Kraken and its
//! core time: a cached symbol (the steady state), the first alert after the cache expired,
//! and a symbol no Kraken name matches (the whole list is read, then the alert refused).

use std::hint::black_box;
use std::time::Instant;
use tv_kraken_bridge::bridge::{self, Host, Input, Request, Step};
use tv_kraken_bridge::config::Config;
use tv_kraken_bridge::kraken::reply::Transport;
use tv_kraken_bridge::kraken::sign::api_sign;
use tv_kraken_bridge::store::MemoryStore;
use tv_kraken_bridge::time::Now;

const SECRET: &str = "bench-webhook-secret-0123456789abcdef";
const KEY: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
const ONE_PAIR: &str = r#"{"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT","quote":"ZUSD","pair_decimals":1,"lot_decimals":8,"ordermin":"0.00005","costmin":"0.5","tick_size":"0.1","status":"online"}}}"#;
const START: u64 = 1_764_355_200_000_000;

/// Kraken's `AssetPairs`, whole and by `pair` name, every answer prepared before timing so
/// that only the core is measured.
struct Kraken {
    whole: Vec<u8>,
    pairs: usize,
    by_name: std::collections::HashMap<String, Vec<u8>>,
}

impl Kraken {
    fn new(whole: Vec<u8>) -> Kraken {
        let v: serde_json::Value = serde_json::from_slice(&whole).expect("AssetPairs JSON");
        let result = v["result"].as_object().expect("a result object");
        let mut by_name = std::collections::HashMap::new();
        for (id, p) in result {
            let answer = serde_json::json!({"error": [], "result": {id.clone(): p.clone()}})
                .to_string()
                .into_bytes();
            for name in [
                id.as_str(),
                p["altname"].as_str().unwrap_or_default(),
                p["wsname"].as_str().unwrap_or_default(),
            ] {
                by_name.insert(name.to_string(), answer.clone());
            }
        }
        Kraken {
            whole,
            pairs: result.len(),
            by_name,
        }
    }

    /// The answer to an `AssetPairs` URL.
    fn asset_pairs(&self, url: &str) -> Vec<u8> {
        let Some((_, name)) = url.split_once("?pair=") else {
            return self.whole.clone();
        };
        match self.by_name.get(&name.replace("%2F", "/")) {
            Some(answer) => answer.clone(),
            None => br#"{"error":["EQuery:Unknown asset pair"]}"#.to_vec(),
        }
    }
}

fn body(i: u64, symbol: &str, signed: bool) -> String {
    let secret = if signed {
        String::new()
    } else {
        format!(r#""secret":"{SECRET}","#)
    };
    format!(
        r#"{{{secret}"id":"bench-{i}","symbol":"{symbol}","side":"buy","order_type":"limit","volume":"0.0125","price":"37500.5"}}"#
    )
}

fn signature(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What one alert cost: Kraken calls before the AddOrder, and bytes read from Kraken.
#[derive(Default, Clone, Copy)]
struct Cost {
    calls: usize,
    bytes: usize,
    /// It reached the signed AddOrder (not: answered before, e.g. `422 unknown_symbol`).
    ordered: bool,
}

/// The host's facts for a request at `now`: the Spin flavour with its store.
fn host(now: u64) -> Host {
    Host {
        now: Now(now),
        request_id: format!("r{now}"),
        client_addr: None,
        flavour: "spin",
        state_store: Some("default"),
        store_probe: None,
    }
}

/// Runs one alert through the core until the signed AddOrder.
fn handler(
    config: &Config,
    to_end: bool,
    store: &mut MemoryStore,
    kraken: &Kraken,
    now: u64,
    body: &str,
    headers: &[(String, String)],
) -> Cost {
    let host = host(now);
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    h.extend_from_slice(headers);
    let request = Request {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: h,
        body: body.as_bytes().to_vec(),
    };
    let mut cost = Cost::default();
    let mut step = bridge::handle(config.clone(), host, request);
    loop {
        step = match step {
            Step::Call(call, pending) if call.kraken_method == "AddOrder" => {
                cost.ordered = true;
                if !to_end {
                    return cost;
                }
                // Placed: the answer, then the writes after it (the pair cache among them).
                let body = br#"{"error":[],"result":{"descr":{"order":"buy"},"txid":["OX"]}}"#;
                pending.resume(
                    Input::Kraken(Transport::Reply {
                        status: 200,
                        body: body.to_vec(),
                    }),
                    Now(now),
                )
            }
            Step::Call(call, pending) => {
                let body = match call.kraken_method {
                    "AssetPairs" => kraken.asset_pairs(&call.url),
                    // A position alert prices its target and reads the holding.
                    "Ticker" => br#"{"error":[],"result":{"XXBTZUSD":{"c":["67000.0","0.1"]}}}"#
                        .to_vec(),
                    "BalanceEx" => br#"{"error":[],"result":{"XXBT":{"balance":"2","hold_trade":"0"},"ZUSD":{"balance":"100000","hold_trade":"0"}}}"#
                        .to_vec(),
                    other => panic!("unexpected call {other}"),
                };
                cost.calls += 1;
                cost.bytes += body.len();
                pending.resume(
                    Input::Kraken(Transport::Reply { status: 200, body }),
                    Now(now),
                )
            }
            Step::Store(op, pending) => {
                let reply = store.apply(op);
                pending.resume(Input::Store(reply), Now(now))
            }
            Step::Wait(_, pending) => pending.resume(Input::Waited, Now(now)),
            Step::Answer(_, pending) => pending.resume(Input::Answered, Now(now)),
            Step::Done(_) => return cost,
        };
    }
}

/// Runs one request to `path` through the core to its answer: its status.
fn answer(config: &Config, path: &str, body: &str, now: u64) -> u16 {
    let host = host(now);
    let request = Request {
        method: "POST".into(),
        path: path.into(),
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: body.as_bytes().to_vec(),
    };
    match bridge::handle(config.clone(), host, request) {
        Step::Done(done) => done.response.status,
        other => panic!("a refused alert went on: {other:?}"),
    }
}

/// A store whose pair cache already holds the benchmark's symbol.
fn warm(config: &Config, kraken: &Kraken) -> MemoryStore {
    let mut store = MemoryStore::default();
    handler(
        config,
        true,
        &mut store,
        kraken,
        START,
        &body(0, "BTCUSD", false),
        &[],
    );
    store
}

fn time<F: FnMut(u64) -> Cost>(iterations: u64, mut f: F) -> (f64, Cost) {
    let mut cost = Cost::default();
    let start = Instant::now();
    for i in 0..iterations {
        cost = f(i);
    }
    (start.elapsed().as_nanos() as f64 / iterations as f64, cost)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let (pairs, kraken) = match args.next() {
        Some(path) => {
            let whole = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let k = Kraken::new(whole);
            (format!("{} pairs, {} bytes", k.pairs, k.whole.len()), k)
        }
        None => (
            "1 pair".to_string(),
            Kraken::new(ONE_PAIR.as_bytes().to_vec()),
        ),
    };
    let config = Config::from_lookup(|name| match name {
        "webhook_secret" => Some(SECRET.into()),
        "kraken_api_key" => Some("bench-api-key-0001".into()),
        "kraken_api_secret" => Some(KEY.into()),
        "rate_limit_per_minute" => Some("100000".into()),
        _ => None,
    });
    assert!(config.is_usable(), "{:?}", config.problems);
    let secret_bodies: Vec<String> = (0..iterations).map(|i| body(i, "BTCUSD", false)).collect();
    let signed_bodies: Vec<String> = (0..iterations).map(|i| body(i, "BTCUSD", true)).collect();
    let signatures: Vec<Vec<(String, String)>> = signed_bodies
        .iter()
        .map(|b| vec![("x-signature".to_string(), signature(b))])
        .collect();

    // The floor, in the same run.
    let (floor, _) = time(iterations, |i| {
        black_box(
            serde_json::from_slice::<serde_json::Value>(secret_bodies[i as usize].as_bytes())
                .unwrap(),
        );
        Cost::default()
    });
    let (sign, _) = time(iterations, |i| {
        black_box(
            api_sign(
                KEY.as_bytes(),
                "/0/private/AddOrder",
                i,
                secret_bodies[i as usize].as_bytes(),
            )
            .unwrap(),
        );
        Cost::default()
    });
    // A cached symbol: warm the cache once, then every alert finds its pair there.
    let mut store = warm(&config, &kraken);
    let (cached_secret, cached_cost) = time(iterations, |i| {
        handler(
            &config,
            false,
            &mut store,
            &kraken,
            START + i + 1,
            &secret_bodies[i as usize],
            &[],
        )
    });
    let mut store = warm(&config, &kraken);
    let (cached_signed, _) = time(iterations, |i| {
        let i = i as usize;
        handler(
            &config,
            false,
            &mut store,
            &kraken,
            START + i as u64 + 1,
            &signed_bodies[i],
            &signatures[i],
        )
    });
    // The first alert after the cache expired: a fresh store every time.
    let few = (iterations / 20).max(50);
    let (expired, expired_cost) = time(few, |i| {
        let mut store = MemoryStore::default();
        handler(
            &config,
            false,
            &mut store,
            &kraken,
            START + i,
            &secret_bodies[i as usize],
            &[],
        )
    });
    // A position alert on a cached symbol: the last trade, the pair's turn (two store
    // counters at most), the balance, the plan; run to its end, which gives the turn back
    // (a turn left held would make the next iteration wait for it).
    let mut store = warm(&config, &kraken);
    let (position, position_cost) = time(iterations, |i| {
        let b = format!(
            r#"{{"secret":"{SECRET}","id":"bench-pos-{i}","action":"position","symbol":"BTCUSD","position":"0.5"}}"#
        );
        handler(&config, true, &mut store, &kraken, START + i + 1, &b, &[])
    });
    // The same for an order alert, to its end too: what the position alert adds.
    let mut store = warm(&config, &kraken);
    let (to_end, _) = time(iterations, |i| {
        let i = i as usize;
        handler(
            &config,
            true,
            &mut store,
            &kraken,
            START + i as u64 + 1,
            &secret_bodies[i],
            &[],
        )
    });
    // A symbol no Kraken name matches: the `pair` query fails, the whole list is read and
    // parsed, and the alert is refused (`422 unknown_symbol`).
    let (unknown, unknown_cost) = time(few, |i| {
        let mut store = MemoryStore::default();
        let b = body(i, "NOSUCHCOIN/USD", false);
        handler(&config, false, &mut store, &kraken, START + i, &b, &[])
    });
    // A wrong secret sent to an account that exists and to one that does not, with eight
    // accounts configured: an unknown account must cost what a wrong secret costs, or the
    // time would tell a caller which accounts exist.
    let accounts: Vec<String> = (0..8)
        .map(|i| {
            format!(r#""acct{i}":{{"webhook_secret":"bench-account-secret-{i}-0123456789abcdef"}}"#)
        })
        .collect();
    let accounts = format!("{{{}}}", accounts.join(","));
    let with_accounts = Config::from_lookup(|name| match name {
        "kraken_accounts" => Some(accounts.clone()),
        "webhook_secret" => Some(SECRET.into()),
        "kraken_api_key" => Some("bench-api-key-0001".into()),
        "kraken_api_secret" => Some(KEY.into()),
        _ => None,
    });
    assert!(with_accounts.is_usable(), "{:?}", with_accounts.problems);
    let wrong: Vec<String> = secret_bodies
        .iter()
        .map(|b| b.replace(SECRET, "not-the-secret-of-any-account-01234"))
        .collect();
    let refused = |path: &'static str| {
        let (config, wrong) = (&with_accounts, &wrong);
        move |i: u64| {
            assert_eq!(answer(config, path, &wrong[i as usize], START + i), 401);
            Cost::default()
        }
    };
    // Interleaved rounds, each side first in turn, so that neither gets the warmer caches.
    let (mut known, mut nosuch) = (0.0, 0.0);
    for round in 0..10 {
        let one = |path| time(iterations / 10, refused(path)).0 / 10.0;
        if round % 2 == 0 {
            known += one("/webhook/acct3");
            nosuch += one("/webhook/nosuch");
        } else {
            nosuch += one("/webhook/nosuch");
            known += one("/webhook/acct3");
        }
    }
    assert!(cached_cost.ordered && expired_cost.ordered && !unknown_cost.ordered);
    assert!(position_cost.ordered && position_cost.calls == 2);
    assert_eq!(
        cached_cost.calls, 0,
        "a cached symbol calls Kraken before its order"
    );

    println!("iterations: {iterations} (first-alert cases: {few}); pair list: {pairs}");
    println!("| path | ns per alert | x floor | Kraken calls | bytes from Kraken |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, ns: f64, c: Cost| {
        println!(
            "| {name} | {ns:.0} | {:.1} | {} | {} |",
            ns / floor,
            c.calls,
            c.bytes
        );
    };
    row("floor: parse the alert JSON", floor, Cost::default());
    row("Kraken API-Sign alone", sign, Cost::default());
    row(
        "alert to signed AddOrder, cached symbol, body secret",
        cached_secret,
        cached_cost,
    );
    row(
        "alert to signed AddOrder, cached symbol, X-Signature",
        cached_signed,
        cached_cost,
    );
    row(
        "order alert to its answer and the writes after it, cached symbol",
        to_end,
        cached_cost,
    );
    row(
        "position alert to its answer and the writes after it (Ticker, turn, BalanceEx)",
        position,
        position_cost,
    );
    row("first alert after the cache expired", expired, expired_cost);
    row(
        "an unknown symbol (whole list read, refused)",
        unknown,
        unknown_cost,
    );
    row(
        "a wrong secret to an account (`/webhook/acct3`, 8 accounts)",
        known,
        Cost::default(),
    );
    row(
        "a wrong secret to no account (`/webhook/nosuch`)",
        nosuch,
        Cost::default(),
    );
    println!();
    println!(
        "An unknown account against a known one, wrong secret each: {:.2} (1.00: the same work; the answers are identical).",
        nosuch / known
    );
}
