//! The whole request handler of the sans-IO core, driven to its response by an in-memory
//! world: a key-value store, a fake clock and canned Kraken answers the fuzzer picks.
//!
//! Input layout (missing bytes read as zero, so every input is a request):
//!
//! | byte  | meaning |
//! | ----- | ------- |
//! | 0     | method and path: `POST /webhook` (half the values), `GET /health`, `GET /config`, others |
//! | 1     | headers: content type, `x-signature` (none, valid, invalid), store health |
//! | 2     | settings: splice the body `secret`, `dry_run`, development, no store, ... |
//! | 3     | scenario: send it twice, the first instance dies mid-request, pairs cached, ... |
//! | 4..12 | the Kraken script: one byte per Kraken call, low nibble picks the answer, high nibble the latency |
//! | 12..  | the body |
//!
//! With bit 0 of byte 2 set, `"secret":"<webhook secret>",` is spliced in after the body's
//! first `{`, so the fuzzer gets past authentication without having to guess the secret.
//!
//! Invariants checked on every response (a violation panics, which libFuzzer reports):
//! - the machine finishes within `MAX_STEPS` steps and inside the 2.5 s budget;
//! - the status is a documented one, the body is JSON, `content-type: application/json` and
//!   `x-request-id` are set, and every audit line is one JSON object on one line;
//! - neither the response nor an audit line contains the webhook secret, the Kraken key or
//!   the Kraken secret;
//! - once an AddOrder was sent whose answer was not a certain refusal (a txid, a time-out, a
//!   5xx, `EService:Unavailable`...), the answer is never a 5xx; an AddOrder answered with a
//!   txid is answered 200;
//! - every Kraken call goes to the configured URL with a time-out inside the budget, and the
//!   nonces of private calls strictly increase.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tv_kraken_bridge::alert::MAX_BODY_BYTES;
use tv_kraken_bridge::auth;
use tv_kraken_bridge::bridge::{self, Done, Host, Input, Request, Step};
use tv_kraken_bridge::config::Config;
use tv_kraken_bridge::kraken::pairs::Pairs;
use tv_kraken_bridge::kraken::reply::Transport;
use tv_kraken_bridge::kraken::request::Call;
use tv_kraken_bridge::outcome::{BUDGET_MS, ORDER_DEADLINE_MS, PAIR_KEY_PREFIX};
use tv_kraken_bridge::store::{MemoryStore, StoreOp, StoreReply};
use tv_kraken_bridge::time::Now;

const WEBHOOK_SECRET: &str = "fuzz-webhook-secret-0123456789abcdefXYZ";
const PREVIOUS_SECRET: &str = "fuzz-webhook-secret-previous-9876543210";
const API_KEY: &str = "fuzz-kraken-api-key-Qm9vZ2xlUGxheQ";
const API_SECRET: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
const KRAKEN_URL: &str = "http://127.0.0.1:1";
/// 2025-11-28T18:40:00Z, the instant the seed corpus's timestamps are near.
const NOW: u64 = 1_764_355_200_000_000;
/// A position alert that waits for its pair's turn takes three steps per try (two counters and
/// a wait of at least 40 ms) for the whole budget: about 190.
const MAX_STEPS: usize = 256;
const STATUSES: &[u16] = &[
    200, 202, 400, 401, 403, 404, 405, 413, 415, 422, 423, 429, 503,
];
const PREFIX_LEN: usize = 12;

/// A subset of Kraken's real AssetPairs answer.
const ASSET_PAIRS: &str = r#"{"error":[],"result":{
  "XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT","quote":"ZUSD","pair_decimals":1,"cost_decimals":5,"lot_decimals":8,"ordermin":"0.00005","costmin":"0.5","tick_size":"0.1","status":"online"},
  "XBTUSDT":{"altname":"XBTUSDT","wsname":"XBT/USDT","base":"XXBT","quote":"USDT","pair_decimals":1,"cost_decimals":5,"lot_decimals":8,"ordermin":"0.00005","costmin":"0.5","tick_size":"0.1","status":"online"},
  "XETHZUSD":{"altname":"ETHUSD","wsname":"ETH/USD","base":"XETH","quote":"ZUSD","pair_decimals":2,"cost_decimals":5,"lot_decimals":8,"ordermin":"0.002","costmin":"0.5","tick_size":"0.01","status":"online"},
  "SOLUSD":{"altname":"SOLUSD","wsname":"SOL/USD","base":"SOL","quote":"ZUSD","pair_decimals":2,"cost_decimals":5,"lot_decimals":8,"ordermin":"0.02","costmin":"0.5","tick_size":"0.01","status":"online"},
  "XDGUSD":{"altname":"XDGUSD","wsname":"XDG/USD","base":"XXDG","quote":"ZUSD","pair_decimals":7,"cost_decimals":5,"lot_decimals":8,"ordermin":"20","costmin":"0.5","tick_size":"0.0000001","status":"online"},
  "ADAEUR":{"altname":"ADAEUR","wsname":"ADA/EUR","base":"ADA","quote":"ZEUR","pair_decimals":6,"cost_decimals":5,"lot_decimals":8,"ordermin":"5","costmin":"0.5","tick_size":"0.000001","status":"cancel_only"}
}}"#;
/// The same answer a day later: XBTUSD in post-only mode, SOLUSD delisted.
const ASSET_PAIRS_CHANGED: &str = r#"{"error":[],"result":{
  "XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT","quote":"ZUSD","pair_decimals":1,"lot_decimals":8,"ordermin":"0.0001","costmin":"0.5","tick_size":"0.1","status":"post_only"},
  "XETHZUSD":{"altname":"ETHUSD","wsname":"ETH/USD","base":"XETH","quote":"ZUSD","pair_decimals":2,"lot_decimals":8,"ordermin":"0.002","costmin":"0.5","tick_size":"0.01","status":"online"}
}}"#;

/// `FUZZ_HANDLER_TRACE=1` prints each request's Kraken calls and response to stderr, to
/// see what an input does (`cargo fuzz run ... handler INPUT`).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_HANDLER_TRACE").is_some())
}

fn bit(byte: u8, n: u8) -> bool {
    byte >> n & 1 == 1
}

fn reply(status: u16, body: &str) -> Transport {
    Transport::Reply {
        status,
        body: body.as_bytes().to_vec(),
    }
}

fn ok(body: &str) -> Transport {
    reply(200, body)
}

/// What the world knows about an AddOrder from the answer it gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Answered with a txid: the order exists.
    Placed,
    /// Certainly not placed (a refusal, a transient refusal, never sent, a validation).
    Refused,
    /// The order may exist.
    MayExist,
}

/// The value of form field `name` in a Kraken call body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreMode {
    Healthy,
    Down,
    ReadOnly,
}

struct World {
    store: MemoryStore,
    store_mode: StoreMode,
    script: [u8; 8],
    next: usize,
    /// The fake clock, microseconds since the epoch.
    clock: u64,
    last_nonce: u64,
}

/// What one request did, as the world saw it.
#[derive(Default)]
struct Run {
    /// Deadlines (host clock, µs) of AddOrders whose order may exist.
    may_exist: Vec<u64>,
    /// An AddOrder or a look-up said the order exists.
    placed: bool,
    /// The `now` last handed to the machine: an AddOrder's deadline is 5 s after it.
    last_now: u64,
    /// The last look-up of open orders found nothing.
    open_absent: bool,
    add_orders: u32,
}

impl World {
    fn script_byte(&mut self) -> u8 {
        let b = self.script.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        b
    }

    fn store_op(&mut self, op: StoreOp) -> StoreReply {
        let write = !matches!(op, StoreOp::Get(_) | StoreOp::Keys);
        match self.store_mode {
            StoreMode::Down => return StoreReply::Failed("store unavailable".into()),
            StoreMode::ReadOnly if write => return StoreReply::Failed("store is read-only".into()),
            _ => {}
        }
        self.store.apply(op)
    }

    /// Kraken's answer to `call`, how long it took (µs), and what it means for an order.
    fn kraken(&mut self, call: &Call, run: &mut Run) -> (Transport, u64) {
        assert!(
            call.url.starts_with(&format!("{KRAKEN_URL}/0/")),
            "call to {}",
            call.url
        );
        assert!(
            call.timeout_ms > 0 && call.timeout_ms <= BUDGET_MS,
            "time-out {} ms",
            call.timeout_ms
        );
        if call.url.contains("/0/private/") {
            let nonce: u64 = form_field(&call.body, "nonce")
                .and_then(|n| n.parse().ok())
                .expect("a private call carries a nonce");
            assert!(
                nonce > self.last_nonce,
                "nonce {nonce} after {}",
                self.last_nonce
            );
            self.last_nonce = nonce;
            let key = call.headers.iter().find(|(k, _)| k == "api-key");
            assert_eq!(key.map(|(_, v)| v.as_str()), Some(API_KEY));
        }

        let b = self.script_byte();
        let choice = usize::from(b & 0x0f);
        let latency_ms = 10 + u64::from(b >> 4) * 40;
        let cl_ord_id = form_field(&call.body, "cl_ord_id").unwrap_or_default();
        let validate = form_field(&call.body, "validate").as_deref() == Some("true");

        let (answer, fate) = match call.kraken_method {
            "AssetPairs" => (asset_pairs(choice), None),
            "Ticker" => (ticker(choice), None),
            "BalanceEx" => (balance(choice), None),
            "CancelAll" => (cancel_all(choice), None),
            "OpenOrders" => (lookup("open", choice, &cl_ord_id), None),
            "ClosedOrders" => (lookup("closed", choice, &cl_ord_id), None),
            "AddOrder" => {
                run.add_orders += 1;
                let (t, fate) = add_order(choice, validate);
                (t, Some(fate))
            }
            other => panic!("unexpected Kraken method {other}"),
        };
        // An answer slower than the call's time-out is a time-out.
        let (answer, elapsed_ms) = match answer {
            Transport::NotSent(e) => (Transport::NotSent(e), 1),
            Transport::Lost(e) => (Transport::Lost(e), call.timeout_ms),
            t if latency_ms > call.timeout_ms => {
                drop(t);
                (Transport::Lost("timed out".into()), call.timeout_ms)
            }
            t => (t, latency_ms),
        };
        let now = self.clock + elapsed_ms * 1_000;

        if let Some(fate) = fate {
            let fate = match (&answer, fate) {
                _ if validate => Fate::Refused,
                (Transport::Lost(_), _) => Fate::MayExist,
                (_, f) => f,
            };
            match fate {
                Fate::Placed => run.placed = true,
                Fate::MayExist => run.may_exist.push(run.last_now + ORDER_DEADLINE_MS * 1_000),
                Fate::Refused => {}
            }
        }
        let absent = matches!(&answer, Transport::Reply { status: 200, .. })
            && matches!(choice % LOOKUPS, 0 | 2);
        match call.kraken_method {
            "OpenOrders" => run.open_absent = absent,
            "ClosedOrders" => {
                if absent && run.open_absent {
                    // Absent from both lists after its deadline (and a second of clock skew):
                    // Kraken's engine can no longer accept that order.
                    run.may_exist.retain(|&d| now <= d + 1_000_000);
                }
                run.open_absent = false;
            }
            _ => {}
        }
        if matches!(call.kraken_method, "OpenOrders" | "ClosedOrders")
            && matches!(&answer, Transport::Reply { status: 200, .. })
            && choice % LOOKUPS == 1
        {
            run.placed = true;
        }
        if trace() {
            let shown = match &answer {
                Transport::Reply { status, body } => {
                    format!("{status} {}", String::from_utf8_lossy(body))
                }
                other => format!("{other:?}"),
            };
            let shown: String = shown.split_whitespace().collect::<Vec<_>>().join(" ");
            let shown: String = shown.chars().take(160).collect();
            eprintln!("  {} after {elapsed_ms} ms: {shown}", call.kraken_method);
        }
        (answer, elapsed_ms * 1_000)
    }

    /// Drives `step` to its response; `die_at_call` abandons it at its first Kraken call
    /// (the instance died), returning `None`.
    fn drive(&mut self, mut step: Step, run: &mut Run, die_at_call: bool) -> Option<Done> {
        for _ in 0..MAX_STEPS {
            step = match step {
                Step::Done(d) => return Some(d),
                Step::Answer(_, pending) => pending.resume(Input::Answered, Now(self.clock)),
                Step::Call(call, pending) => {
                    if die_at_call {
                        return None;
                    }
                    let (t, us) = self.kraken(&call, run);
                    self.clock += us;
                    run.last_now = self.clock;
                    pending.resume(Input::Kraken(t), Now(self.clock))
                }
                Step::Store(op, pending) => {
                    let r = self.store_op(op);
                    self.clock += 1_000;
                    run.last_now = self.clock;
                    pending.resume(Input::Store(r), Now(self.clock))
                }
                Step::Wait(ms, pending) => {
                    assert!(ms > 0 && ms <= BUDGET_MS, "wait of {ms} ms");
                    self.clock += ms * 1_000;
                    run.last_now = self.clock;
                    pending.resume(Input::Waited, Now(self.clock))
                }
            };
        }
        panic!("the handler did not finish within {MAX_STEPS} steps");
    }
}

fn asset_pairs(choice: usize) -> Transport {
    match choice % 8 {
        0 | 1 => ok(ASSET_PAIRS),
        2 => ok(ASSET_PAIRS_CHANGED),
        3 => reply(502, "<html><body>502 Bad Gateway</body></html>"),
        4 => Transport::Lost("connection reset".into()),
        5 => Transport::NotSent("connection refused".into()),
        6 => ok(r#"{"error":["EGeneral:Internal error"]}"#),
        _ => ok(r#"{"error":[],"result":{}}"#),
    }
}

fn ticker(choice: usize) -> Transport {
    match choice % 8 {
        0 | 1 => ok(
            r#"{"error":[],"result":{"XXBTZUSD":{"a":["67001.0","1","1.000"],"b":["67000.0","2","2.000"],"c":["67000.0","0.1"]}}}"#,
        ),
        2 => ok(r#"{"error":[],"result":{"XETHZUSD":{"c":["2450.31","0.5"]}}}"#),
        3 => ok(r#"{"error":["EQuery:Unknown asset pair"]}"#),
        4 => Transport::Lost("timed out".into()),
        5 => reply(503, "Service Unavailable"),
        6 => ok(r#"{"error":[],"result":{"XXBTZUSD":{"c":[]}}}"#),
        _ => ok(r#"{"error":[],"result":{"XXBTZUSD":{"c":["0.0000001","1"]}}}"#),
    }
}

fn balance(choice: usize) -> Transport {
    match choice % 6 {
        0 | 1 => ok(
            r#"{"error":[],"result":{"XXBT":{"balance":"2.5","hold_trade":"0.5"},"ZUSD":{"balance":"10000.0000","hold_trade":"0"},"XETH":{"balance":"3","hold_trade":"0"},"SOL":{"balance":"40","hold_trade":"0"}}}"#,
        ),
        2 => ok(r#"{"error":[],"result":{}}"#),
        3 => ok(r#"{"error":["EAPI:Invalid key"]}"#),
        4 => Transport::Lost("timed out".into()),
        _ => ok(
            r#"{"error":[],"result":{"XXBT":{"balance":"0.00001","hold_trade":"0.00002"},"ZUSD":{"balance":"0.10","hold_trade":"0"}}}"#,
        ),
    }
}

fn cancel_all(choice: usize) -> Transport {
    match choice % 6 {
        0 | 1 => ok(r#"{"error":[],"result":{"count":3,"pending":false}}"#),
        2 => ok(r#"{"error":["EAPI:Invalid key"]}"#),
        3 => Transport::Lost("timed out".into()),
        4 => ok(r#"{"error":["EService:Unavailable"]}"#),
        _ => reply(502, "<html>Bad Gateway</html>"),
    }
}

const LOOKUPS: usize = 8;

/// `OpenOrders` / `ClosedOrders`: 0 and 2 say "absent", 1 "found", the rest fail.
fn lookup(list: &str, choice: usize, cl_ord_id: &str) -> Transport {
    let count = if list == "closed" {
        r#","count":1"#
    } else {
        ""
    };
    match choice % LOOKUPS {
        0 => ok(&format!(
            r#"{{"error":[],"result":{{"{list}":{{}}{count}}}}}"#
        )),
        1 => ok(&format!(
            r#"{{"error":[],"result":{{"{list}":{{"OFUZZ1-AAAAA-BBBBBB":{{"cl_ord_id":"{cl_ord_id}","status":"{}","descr":{{"order":"buy 1.25000000 XBTUSD @ limit 37500.0","close":""}}}}}}{count}}}}}"#,
            if list == "open" { "open" } else { "closed" }
        )),
        2 => ok(&format!(
            r#"{{"error":[],"result":{{"{list}":{{"OOTHER-AAAAA-BBBBBB":{{"cl_ord_id":"0123456789abcdef0123456789abcdef","status":"open","descr":{{"order":"sell 1 XBTUSD @ market"}}}}}}{count}}}}}"#
        )),
        3 => ok(r#"{"error":["EAPI:Invalid nonce"]}"#),
        4 => Transport::Lost("timed out".into()),
        5 => reply(502, "<html>Bad Gateway</html>"),
        6 => ok(r#"{"error":["EService:Unavailable"]}"#),
        _ => Transport::NotSent("connection refused".into()),
    }
}

fn add_order(choice: usize, validate: bool) -> (Transport, Fate) {
    use Fate::*;
    match choice {
        0 if validate => (
            ok(
                r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"}}}"#,
            ),
            Refused,
        ),
        0 => (
            ok(
                r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"},"txid":["OFUZZA-BBBBB-CCCCCC"]}}"#,
            ),
            Placed,
        ),
        // `descr` without `txid` on a real order: Kraken never says that; the order may exist.
        1 => (
            ok(
                r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"}}}"#,
            ),
            MayExist,
        ),
        2 => (ok(r#"{"error":["EOrder:Insufficient funds"]}"#), Refused),
        3 => (ok(r#"{"error":["EService:Unavailable"]}"#), MayExist),
        4 => (ok(r#"{"error":["EAPI:Invalid nonce"]}"#), Refused),
        5 => (ok(r#"{"error":["EAPI:Rate limit exceeded"]}"#), Refused),
        // Kraken's engine refused the order: its deadline had passed.
        6 => (ok(r#"{"error":["EService:Deadline elapsed"]}"#), Refused),
        7 => (reply(502, "<html>Bad Gateway</html>"), MayExist),
        8 => (Transport::Lost("connection reset".into()), MayExist),
        9 => (Transport::NotSent("connection refused".into()), Refused),
        10 => (ok("<html>maintenance</html>"), MayExist),
        11 => (ok(r#"{"error":[],"result":{}}"#), MayExist),
        12 => (
            ok(r#"{"error":["EGeneral:Invalid arguments:volume"]}"#),
            Refused,
        ),
        13 => (ok(r#"{"error":["EQuery:Unknown asset pair"]}"#), Refused),
        14 => (ok(r#"{"error":["EService:Busy"]}"#), MayExist),
        _ => (
            ok(r#"{"error":["EService:Market in cancel_only mode"]}"#),
            Refused,
        ),
    }
}

fn config(flags: u8, scenario: u8) -> Config {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("webhook_secret", WEBHOOK_SECRET),
        ("kraken_api_key", API_KEY),
        ("kraken_api_secret", API_SECRET),
        ("kraken_api_url", KRAKEN_URL),
    ];
    if bit(flags, 1) {
        pairs.push(("dry_run", "true"));
    }
    if bit(flags, 2) {
        pairs.push(("environment", "development"));
    }
    if bit(flags, 5) {
        pairs.push(("log_level", "debug"));
    }
    if bit(flags, 6) {
        pairs.push(("max_order_value", "1000"));
    }
    if bit(flags, 7) {
        pairs.push(("webhook_secret_previous", PREVIOUS_SECRET));
    }
    if bit(scenario, 2) {
        pairs.push(("require_timestamp", "true"));
    }
    if bit(scenario, 3) {
        pairs.push(("allowed_symbols", "XBTUSD,ETHUSD"));
        pairs.push(("symbol_map", "BTCUSDT.P=XBTUSD,ETHUSDT=ETHUSD"));
    }
    if bit(scenario, 5) {
        pairs.push(("rate_limit_per_minute", "1"));
    }
    if bit(scenario, 6) {
        pairs.push(("trading_enabled", "false"));
    }
    Config::from_lookup(|name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

fn request(route: u8, headers_byte: u8, flags: u8, body: &[u8]) -> Request {
    let (method, path) = match route % 8 {
        0..=3 => ("POST", "/webhook"),
        4 => ("GET", "/health"),
        5 => ("GET", "/config"),
        6 => ("GET", "/webhook"),
        _ => match route >> 3 & 7 {
            0 => ("POST", "/webhook?source=tradingview"),
            1 => ("PUT", "/webhook"),
            2 => ("POST", "/health"),
            3 => ("GET", "/"),
            4 => ("POST", "/webhook/"),
            5 => ("post", "/webhook"),
            6 => ("GET", "/config?x=1"),
            _ => ("DELETE", "/nope"),
        },
    };

    let mut body = body.to_vec();
    if bit(flags, 0) {
        splice_secret(&mut body);
    }
    body.truncate(MAX_BODY_BYTES + 1);

    let mut headers = Vec::new();
    match headers_byte & 3 {
        0 => {}
        1 => headers.push(("content-type", "application/json".to_string())),
        2 => headers.push(("content-type", "text/plain; charset=utf-8".to_string())),
        _ => headers.push((
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        )),
    }
    if bit(headers_byte, 5) {
        if let Some((_, v)) = headers.first_mut() {
            *v = v.to_uppercase();
        }
    }
    let good = auth::sign_hex(WEBHOOK_SECRET.as_bytes(), &body);
    match headers_byte >> 2 & 3 {
        0 | 1 => {}
        2 if bit(headers_byte, 4) => headers.push(("x-signature", format!("sha256={good}"))),
        2 => headers.push(("x-signature", good)),
        _ if bit(headers_byte, 4) => headers.push(("x-signature", "sha256=zz".to_string())),
        // The signature of another body.
        _ => headers.push((
            "x-signature",
            auth::sign_hex(WEBHOOK_SECRET.as_bytes(), b"{}"),
        )),
    }
    Request {
        method: method.into(),
        path: path.into(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        body,
    }
}

/// Inserts `"secret":"<webhook secret>"` as the first member of the body's first object.
fn splice_secret(body: &mut Vec<u8>) {
    let Some(i) = body.iter().position(|&b| b == b'{') else {
        return;
    };
    let empty = body[i + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let member = format!(
        "\"secret\":\"{WEBHOOK_SECRET}\"{}",
        if empty { "" } else { "," }
    );
    body.splice(i + 1..i + 1, member.into_bytes());
}

fn check(done: &Done, request_id: &str, run: &Run, started: u64, finished: u64) {
    let r = &done.response;
    let body = String::from_utf8_lossy(&r.body);
    if trace() {
        eprintln!("{request_id}: {} {body}", r.status);
        for line in &done.log {
            eprintln!("  audit: {}", line.text);
        }
    }
    assert!(
        STATUSES.contains(&r.status),
        "undocumented status {}",
        r.status
    );
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&r.body) {
        panic!(
            "status {} with a body that is not JSON ({e}): {body}",
            r.status
        );
    }
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-request-id"), Some(request_id));
    for secret in [WEBHOOK_SECRET, PREVIOUS_SECRET, API_KEY, API_SECRET] {
        assert!(!body.contains(secret), "a secret in the response: {body}");
        for (name, value) in &r.headers {
            assert!(!value.contains(secret), "a secret in header {name}");
        }
        for line in &done.log {
            assert!(
                !line.text.contains(secret),
                "a secret in the audit line {}",
                line.text
            );
        }
    }
    for line in &done.log {
        assert!(
            !line.text.contains('\n'),
            "audit line on two lines: {}",
            line.text
        );
        let v: serde_json::Value = serde_json::from_str(&line.text)
            .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {}", line.text));
        assert!(v.is_object(), "audit line is not an object: {}", line.text);
    }
    if run.placed {
        assert_eq!(r.status, 200, "an order Kraken placed, answered: {body}");
    }
    if !run.may_exist.is_empty() || run.placed {
        assert!(
            r.status < 500,
            "{} after {} AddOrder(s) whose order may exist: {body}",
            r.status,
            run.add_orders
        );
    }
    let elapsed_ms = (finished - started) / 1_000;
    assert!(
        elapsed_ms <= BUDGET_MS,
        "answered after {elapsed_ms} ms, past the {BUDGET_MS} ms budget"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut prefix = [0u8; PREFIX_LEN];
    let n = data.len().min(PREFIX_LEN);
    prefix[..n].copy_from_slice(&data[..n]);
    let body = &data[n..];
    let [route, headers_byte, flags, scenario, script @ ..] = prefix;

    let store_mode = match headers_byte >> 6 {
        2 => StoreMode::Down,
        3 => StoreMode::ReadOnly,
        _ => StoreMode::Healthy,
    };
    let mut world = World {
        store: MemoryStore::default(),
        store_mode,
        script,
        next: 0,
        clock: NOW,
        last_nonce: 0,
    };
    if bit(scenario, 7) {
        // Pairs cached an hour ago minus a minute, each under its name, but SOLUSD: a
        // SOLUSD alert asks Kraken.
        let pairs = Pairs::from_asset_pairs(ASSET_PAIRS.as_bytes()).expect("fixture");
        for p in pairs.0.into_iter().filter(|p| p.altname != "SOLUSD") {
            let cache = serde_json::json!({
                "fetched_at": NOW / 1_000_000 - 3_540,
                "pair": p,
            });
            let key = format!("{PAIR_KEY_PREFIX}{}", p.altname);
            world.store.map.insert(key, cache.to_string().into_bytes());
        }
    }
    let no_store = bit(flags, 3);
    let host = |now: u64, id: &str| Host {
        now: Now(now),
        request_id: id.to_string(),
        client_addr: (!bit(scenario, 4)).then(|| "203.0.113.9".to_string()),
        flavour: if no_store { "wasi" } else { "spin" },
        state_store: (!no_store).then_some("default"),
        store_probe: None,
    };
    let request = request(route, headers_byte, flags, body);
    let cfg = config(flags, scenario);

    // The first request; with scenario bit 1, its instance dies at its first Kraken call.
    let replay = bit(scenario, 0);
    let dies = replay && bit(scenario, 1);
    let mut run = Run {
        last_now: world.clock,
        ..Run::default()
    };
    let started = world.clock;
    let step = bridge::handle(cfg.clone(), host(started, "req-fuzz-1"), request.clone());
    if let Some(done) = world.drive(step, &mut run, dies) {
        check(&done, "req-fuzz-1", &run, started, world.clock);
    }

    // TradingView's resend of the same alert: a second later, or after the first died (past
    // the stale-claim time and the first order's deadline).
    if replay {
        world.clock += if dies { 30_000_000 } else { 1_000_000 };
        let mut run = Run {
            last_now: world.clock,
            ..Run::default()
        };
        let started = world.clock;
        let step = bridge::handle(cfg, host(started, "req-fuzz-2"), request);
        let done = world
            .drive(step, &mut run, false)
            .expect("the resend finishes");
        check(&done, "req-fuzz-2", &run, started, world.clock);
    }
});
