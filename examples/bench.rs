//! Speed of the sans-IO core, as ratios against a floor measured in the same run.
//!
//! The floor is what any bridge must do with an alert: parse its JSON. The measured paths are
//! the whole handler up to the signed AddOrder (authenticate, parse, validate, dedupe and rate
//! reads against an in-memory store, pair resolution from the cached pairs, planning,
//! signing), and Kraken signing alone. Run with `scripts/bench`.

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
const PAIRS: &str = r#"{"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT","quote":"ZUSD","pair_decimals":1,"lot_decimals":8,"ordermin":"0.00005","costmin":"0.5","tick_size":"0.1","status":"online"}}}"#;

fn body(i: u64) -> String {
    format!(
        r#"{{"secret":"{SECRET}","id":"bench-{i}","symbol":"BTCUSD","side":"buy","order_type":"limit","volume":"0.0125","price":"37500.5"}}"#
    )
}

/// Runs one alert through the core until the signed AddOrder; returns its body length.
fn handler(config: &Config, store: &mut MemoryStore, i: u64) -> usize {
    let now = Now(1_764_355_200_000_000 + i);
    let host = Host {
        now,
        request_id: format!("r{i}"),
        client_addr: None,
        flavour: "spin",
        state_store: Some("default"),
    };
    let request = Request {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body(i).into_bytes(),
    };
    let mut step = bridge::handle(config.clone(), host, request);
    loop {
        step = match step {
            Step::Call(call, _) if call.kraken_method == "AddOrder" => return call.body.len(),
            Step::Call(_, pending) => pending.resume(
                Input::Kraken(Transport::Reply {
                    status: 200,
                    body: PAIRS.as_bytes().to_vec(),
                }),
                now,
            ),
            Step::Store(op, pending) => {
                let reply = store.apply(op);
                pending.resume(Input::Store(reply), now)
            }
            Step::Wait(_, pending) => pending.resume(Input::Waited, now),
            Step::Done(d) => panic!("no AddOrder: {}", String::from_utf8_lossy(&d.response.body)),
        };
    }
}

fn time<F: FnMut(u64)>(iterations: u64, mut f: F) -> f64 {
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn main() {
    let iterations: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let config = Config::from_lookup(|name| match name {
        "webhook_secret" => Some(SECRET.into()),
        "kraken_api_key" => Some("bench-key".into()),
        "kraken_api_secret" => Some(KEY.into()),
        "rate_limit_per_minute" => Some("100000".into()),
        _ => None,
    });
    assert!(config.is_usable(), "{:?}", config.problems);
    let bodies: Vec<String> = (0..iterations).map(body).collect();

    // Warm up, then measure the floor and each path in the same run.
    let mut store = MemoryStore::default();
    handler(&config, &mut store, 0);
    let floor = time(iterations, |i| {
        black_box(
            serde_json::from_slice::<serde_json::Value>(bodies[i as usize].as_bytes()).unwrap(),
        );
    });
    let sign = time(iterations, |i| {
        black_box(
            api_sign(
                KEY.as_bytes(),
                "/0/private/AddOrder",
                i,
                bodies[i as usize].as_bytes(),
            )
            .unwrap(),
        );
    });
    let mut store = MemoryStore::default();
    let whole = time(iterations, |i| {
        black_box(handler(&config, &mut store, i + 1));
    });

    println!("iterations: {iterations}");
    println!("floor   parse the alert JSON          {floor:>10.0} ns/op  1.0x");
    println!(
        "sign    Kraken API-Sign               {sign:>10.0} ns/op  {:.1}x",
        sign / floor
    );
    println!(
        "handler alert to signed AddOrder      {whole:>10.0} ns/op  {:.1}x",
        whole / floor
    );
}
