//! Whole-path scenarios of the core with a fixed clock and canned Kraken answers.

use super::*;
use crate::kraken::sign::api_sign;
use crate::secret::Use;
use crate::store::{StoreOp, StoreReply};

const WEBHOOK_SECRET: &str = "tv-webhook-secret-0123456789abcdef";
const PREVIOUS_SECRET: &str = "tv-webhook-secret-previous-0123456";
const API_KEY: &str = "test-api-key-public";
const API_SECRET: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
const NOW: Now = Now(1_764_355_200_000_000); // 2025-11-28T18:40:00Z

fn config(extra: &[(&str, &str)]) -> Config {
    let mut pairs = vec![
        ("webhook_secret", WEBHOOK_SECRET),
        ("kraken_api_key", API_KEY),
        ("kraken_api_secret", API_SECRET),
        ("kraken_api_url", "http://127.0.0.1:18081"),
    ];
    pairs.extend_from_slice(extra);
    Config::from_lookup(|name| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

fn host() -> Host {
    Host {
        now: NOW,
        request_id: "req-1".into(),
        client_addr: Some("203.0.113.9".into()),
        flavour: "spin",
        state_store: Some("default"),
        store_probe: None,
    }
}

fn post(body: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        headers: vec![],
        body: vec![],
    }
}

/// The host around the core in these tests: an in-memory store, canned Kraken answers, and
/// a clock that advances `tick_us` per operation.
#[derive(Default)]
struct World {
    store: std::collections::BTreeMap<String, Vec<u8>>,
    replies: std::collections::VecDeque<Transport>,
    calls: Vec<Call>,
    /// The URLs of the market data and balance calls, answered from fixtures.
    public: Vec<String>,
    /// Kraken does not know these `AssetPairs` `pair` names.
    unknown_names: Vec<&'static str>,
    waits: Vec<u64>,
    ops: Vec<StoreOp>,
    store_fails: bool,
    /// The host lacks `wasi:keyvalue/atomics` (Spin before 3.1, Akamai).
    no_atomics: bool,
    clock: u64,
    tick_us: u64,
}

impl World {
    fn with_replies(replies: impl IntoIterator<Item = Transport>) -> World {
        World {
            replies: replies.into_iter().collect(),
            tick_us: 10_000,
            ..World::default()
        }
    }

    fn now(&mut self) -> Now {
        self.clock += self.tick_us;
        Now(NOW.0 + self.clock)
    }

    fn store_op(&mut self, op: StoreOp) -> StoreReply {
        self.ops.push(op.clone());
        if self.store_fails {
            return StoreReply::Failed("store down".into());
        }
        let mut store = crate::store::MemoryStore {
            map: std::mem::take(&mut self.store),
            atomics: !self.no_atomics,
        };
        let reply = store.apply(op);
        self.store = store.map;
        reply
    }

    /// Drives `step` to its response.
    fn run(&mut self, mut step: Step) -> Done {
        loop {
            step = match step {
                Step::Done(d) => return documented(d),
                Step::Answer(_, p) => p.resume(Input::Answered, NOW),
                Step::Call(call, p) => {
                    let reply = match self.market_data(&call) {
                        Some(r) => r,
                        None => {
                            let r = self.replies.pop_front().unwrap_or_else(|| {
                                panic!("unexpected Kraken call to {}", call.url)
                            });
                            self.calls.push(call);
                            r
                        }
                    };
                    let now = self.now();
                    p.resume(Input::Kraken(reply), now)
                }
                Step::Store(op, p) => {
                    let reply = self.store_op(op);
                    // A store operation takes a millisecond; only Kraken calls take `tick_us`.
                    self.clock += 1_000;
                    p.resume(Input::Store(reply), Now(NOW.0 + self.clock))
                }
                Step::Wait(ms, p) => {
                    self.waits.push(ms);
                    self.clock += ms * 1_000;
                    let now = self.now();
                    p.resume(Input::Waited, now)
                }
            }
        }
    }

    /// Drives `step` through store operations and market data up to its first order call.
    fn until_call(&mut self, mut step: Step) -> Result<(Call, Box<Pending>), Done> {
        loop {
            step = match step {
                Step::Done(d) => return Err(d),
                Step::Answer(_, p) => p.resume(Input::Answered, NOW),
                Step::Call(call, p) => match self.market_data(&call) {
                    Some(r) => {
                        let now = self.now();
                        p.resume(Input::Kraken(r), now)
                    }
                    None => return Ok((call, p)),
                },
                Step::Store(op, p) => {
                    let reply = self.store_op(op);
                    let now = self.now();
                    p.resume(Input::Store(reply), now)
                }
                Step::Wait(..) => panic!("unexpected wait"),
            }
        }
    }
}

impl World {
    /// [`market_data`], recorded, with the names Kraken does not know refused.
    fn market_data(&mut self, call: &Call) -> Option<Transport> {
        let answer = market_data(call)?;
        self.public.push(call.url.clone());
        let unknown = self.unknown_names.iter().any(|n| {
            call.url
                .ends_with(&format!("pair={}", n.replace('/', "%2F")))
        });
        if call.kraken_method == "AssetPairs" && unknown {
            return Some(reply(r#"{"error":["EQuery:Unknown asset pair"]}"#));
        }
        Some(answer)
    }
}

impl World {
    /// Drives one delivery of LIMIT at the fixed clock; `store` performs each store
    /// operation, so a test can act in the instant between two of them (as another delivery
    /// of the same alert would). Kraken calls are answered from fixtures and the queue.
    fn drive_limit(&mut self, mut store: impl FnMut(&mut World, StoreOp) -> StoreReply) -> Done {
        let mut step = handle(config(&[]), host(), post(LIMIT, &[]));
        loop {
            step = match step {
                Step::Done(d) => return documented(d),
                Step::Answer(_, p) => p.resume(Input::Answered, NOW),
                Step::Store(op, p) => {
                    let r = store(self, op);
                    p.resume(Input::Store(r), NOW)
                }
                Step::Call(call, p) => {
                    let r = match self.market_data(&call) {
                        Some(r) => r,
                        None => {
                            let r = self.replies.pop_front();
                            let r = r.unwrap_or_else(|| panic!("no answer for {}", call.url));
                            self.calls.push(call);
                            r
                        }
                    };
                    p.resume(Input::Kraken(r), NOW)
                }
                Step::Wait(_, p) => p.resume(Input::Waited, NOW),
            };
        }
    }
}

/// Kraken's market data and balances, answered from fixtures: the tests' queues hold only
/// order calls.
fn market_data(call: &Call) -> Option<Transport> {
    match call.kraken_method {
        "AssetPairs" => Some(reply(crate::kraken::pairs::tests::ASSET_PAIRS)),
        "Ticker" => Some(reply(
            r#"{"error":[],"result":{"XXBTZUSD":{"c":["67000.0","0.1"]}}}"#,
        )),
        "BalanceEx" => Some(reply(
            r#"{"error":[],"result":{"XXBT":{"balance":"2","hold_trade":"0"},"ZUSD":{"balance":"10000","hold_trade":"0"}}}"#,
        )),
        _ => None,
    }
}

/// Every audit line and JSON notification a test produces is checked against
/// OBSERVABILITY.md.
fn documented(d: Done) -> Done {
    for line in &d.log {
        crate::audit::documented::check(&line.text);
    }
    for n in &d.notices {
        if n.format == crate::notify::Format::Json {
            crate::audit::documented::check(&String::from_utf8_lossy(&n.call.body));
        }
    }
    d
}

fn done(step: Step) -> Done {
    World::default().run(step)
}

/// The first Kraken call a request makes, or a panic showing the response instead.
fn sends(step: Step) -> (Call, Box<Pending>) {
    World::default().until_call(step).unwrap_or_else(|d| {
        panic!(
            "expected a Kraken call, got {} {}",
            d.response.status,
            String::from_utf8_lossy(&d.response.body)
        )
    })
}

fn is_call(step: Step) -> bool {
    World::default().until_call(step).is_ok()
}

fn resume(pending: Box<Pending>, t: Transport) -> Done {
    World::default().run(pending.resume(Input::Kraken(t), NOW))
}

fn body(d: &Done) -> Value {
    serde_json::from_slice(&d.response.body).unwrap()
}

fn events(d: &Done) -> Vec<String> {
    d.log
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(&l.text).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

const LIMIT: &str = r#"{"secret":"tv-webhook-secret-0123456789abcdef","symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"1.25","price":"37500"}"#;

fn reply(json: &str) -> Transport {
    Transport::Reply {
        status: 200,
        body: json.as_bytes().to_vec(),
    }
}

#[test]
fn body_secret_alert_becomes_one_signed_add_order() {
    let (call, pending) = sends(handle(config(&[]), host(), post(LIMIT, &[])));
    assert_eq!(call.url, "http://127.0.0.1:18081/0/private/AddOrder");
    let sent = String::from_utf8(call.body.clone()).unwrap();
    let cl = DedupeKey::new(None, LIMIT.as_bytes()).cl_ord_id();
    assert_eq!(
        sent,
        format!(
            "nonce={}&pair=XBTUSD&type=buy&ordertype=limit&volume=1.25&price=37500&cl_ord_id={cl}&deadline={}",
            NOW.0,
            Now(NOW.0 + 5_000_000).rfc3339().replace(':', "%3A")
        )
    );
    let header = |n: &str| call.headers.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(header("api-key"), API_KEY);
    assert_eq!(
        header("api-sign"),
        api_sign(
            API_SECRET.as_bytes(),
            "/0/private/AddOrder",
            NOW.0,
            &call.body
        )
        .unwrap()
    );

    let d = resume(
        pending,
        reply(
            r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"},"txid":["OAAAAA-BBBBB-CCCCCC"]}}"#,
        ),
    );
    assert_eq!(d.response.status, 200);
    assert_eq!(
        body(&d),
        json!({"status":"placed","txid":["OAAAAA-BBBBB-CCCCCC"],"description":"buy 1.25000000 XBTUSD @ limit 37500.0","cl_ord_id":cl})
    );
    assert_eq!(events(&d), ["order_placed"]);
    assert!(!d.log[0].text.contains(WEBHOOK_SECRET));
}

/// `kraken_api_keys` of two further keys, each with its own secret.
const MORE_KEYS: &str = r#"[{"api_key":"second-api-key-public","api_secret":"c2Vjb25kLXNlY3JldC1ieXRlcy0wMTIzNDU2Nzg5"},{"api_key":"third-api-key-public","api_secret":"dGhpcmQtc2VjcmV0LWJ5dGVzLTAxMjM0NTY3ODk="}]"#;

#[test]
fn alerts_spread_over_the_key_pool_each_signed_with_its_own_secret() {
    let cfg = config(&[("kraken_api_keys", MORE_KEYS)]);
    assert!(cfg.is_usable(), "{:?}", cfg.problems);
    assert_eq!(cfg.kraken_key_count(), 3);
    let keys = [
        (API_KEY, API_SECRET),
        (
            "second-api-key-public",
            "c2Vjb25kLXNlY3JldC1ieXRlcy0wMTIzNDU2Nzg5",
        ),
        (
            "third-api-key-public",
            "dGhpcmQtc2VjcmV0LWJ5dGVzLTAxMjM0NTY3ODk=",
        ),
    ];
    let mut used = [0usize; 3];
    for i in 0..60 {
        let alert = LIMIT.replace(r#""symbol""#, &format!(r#""id":"pool-{i}","symbol""#));
        let (call, _) = sends(handle(cfg.clone(), host(), post(&alert, &[])));
        assert_eq!(call.kraken_method, "AddOrder");
        let header = |n: &str| call.headers.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let k = keys
            .iter()
            .position(|(key, _)| header("api-key") == *key)
            .unwrap();
        let cl = DedupeKey::new(Some(&format!("pool-{i}")), b"").cl_ord_id();
        assert_eq!(
            k,
            cfg.kraken_key_for(&cl),
            "every delivery of an alert: one key"
        );
        assert_eq!(
            header("api-sign"),
            api_sign(
                keys[k].1.as_bytes(),
                "/0/private/AddOrder",
                NOW.0,
                &call.body
            )
            .unwrap(),
            "signed with its own key's secret"
        );
        used[k] += 1;
    }
    assert!(used.iter().all(|&n| n >= 10), "{used:?}");
    // /health and /config count the keys and show none.
    let h = done(handle(cfg.clone(), host(), get("/health")));
    assert_eq!(body(&h)["kraken_keys"], 3);
    let dev = config(&[
        ("kraken_api_keys", MORE_KEYS),
        ("environment", "development"),
    ]);
    let c = done(handle(dev, host(), get("/config")));
    let text = String::from_utf8_lossy(&c.response.body).into_owned();
    assert_eq!(body(&c)["kraken_api_keys"], "***");
    assert_eq!(body(&c)["kraken_keys"], 3);
    for (key, secret) in keys {
        assert!(!text.contains(key) && !text.contains(secret), "{text}");
    }
}

#[test]
fn a_key_kraken_refuses_is_passed_over_for_the_next_key_of_the_pool() {
    let cfg = config(&[("kraken_api_keys", MORE_KEYS)]);
    let pool = [API_KEY, "second-api-key-public", "third-api-key-public"];
    let signer = |call: &Call| {
        let key = &call.headers.iter().find(|(k, _)| k == "api-key").unwrap().1;
        pool.iter().position(|k| k == key).unwrap()
    };
    let refused = reply(r#"{"error":["EAPI:Invalid key"]}"#);
    // The first key refused: the same AddOrder goes out on the next key and is placed.
    let (first, pending) = sends(handle(cfg.clone(), host(), post(LIMIT, &[])));
    let step = pending.resume(Input::Kraken(refused.clone()), NOW);
    let (second, pending) = World::default().until_call(step).ok().unwrap();
    assert_eq!(second.kraken_method, "AddOrder");
    assert_eq!(signer(&second), (signer(&first) + 1) % 3);
    assert_eq!(
        second.body, first.body,
        "the same order, the same cl_ord_id"
    );
    let d = resume(
        pending,
        reply(r#"{"error":[],"result":{"descr":{"order":"buy"},"txid":["OAAAAA-BBBBB-CCCCCC"]}}"#),
    );
    assert_eq!(d.response.status, 200);
    let line: Value = serde_json::from_str(&d.log[0].text).unwrap();
    assert_eq!(line["event"], "order_placed");
    assert_eq!(line["signer"], signer(&second) + 1);
    assert_eq!(line["signers_refused"], json!([signer(&first) + 1]));
    // Every key refused: 422 order_rejected naming Kraken's error and every key, nothing
    // placed.
    let (_, mut pending) = sends(handle(cfg.clone(), host(), post(LIMIT, &[])));
    for _ in 0..2 {
        let step = pending.resume(Input::Kraken(refused.clone()), NOW);
        pending = World::default().until_call(step).ok().unwrap().1;
    }
    let d = resume(pending, refused.clone());
    assert_eq!(d.response.status, 422);
    let line: Value = serde_json::from_str(&d.log[0].text).unwrap();
    assert_eq!(line["event"], "order_rejected");
    assert_eq!(line["kraken_error"], "EAPI:Invalid key");
    assert_eq!(line["signers_refused"].as_array().unwrap().len(), 2);
    // One key only: no pool to fall back on, and no signer fields.
    let (_, pending) = sends(handle(config(&[]), host(), post(LIMIT, &[])));
    let d = resume(pending, refused);
    assert_eq!(d.response.status, 422);
    let line: Value = serde_json::from_str(&d.log[0].text).unwrap();
    assert!(line.get("signer").is_none() && line.get("signers_refused").is_none());
}

#[test]
fn a_malformed_key_pool_is_a_configuration_error_that_names_no_value() {
    let secret = "c2Vjb25kLXNlY3JldC1ieXRlcy0wMTIzNDU2Nzg5";
    let one = |k: &str, s: &str| format!(r#"{{"api_key":"{k}","api_secret":"{s}"}}"#);
    let many = (0..16)
        .map(|i| one(&format!("pool-api-key-{i:02}"), secret))
        .collect::<Vec<_>>()
        .join(",");
    let cases = [
        "not json".to_string(),
        r#"{"api_key":"x"}"#.to_string(),
        format!(r#"[{{"api_key":"second-api-key-public","api_secret":"{secret}","otp":"1"}}]"#),
        format!("[{}]", one("short-key", secret)),
        format!("[{}]", one("second-api-key-public", "not base64 at all!")),
        format!("[{0},{0}]", one("second-api-key-public", secret)),
        format!("[{}]", one(API_KEY, secret)),
        format!("[{many}]"),
    ];
    for case in &cases {
        let cfg = config(&[("kraken_api_keys", case)]);
        let problems: Vec<_> = cfg.problems.iter().map(|p| p.setting).collect();
        assert_eq!(problems, ["kraken_api_keys"], "{case}");
        let reason = &cfg.problems[0].reason;
        for value in [
            "second-api-key-public",
            secret,
            API_KEY,
            "short-key",
            "not base64",
        ] {
            assert!(!reason.contains(value), "{case}: {reason}");
        }
        let h = done(handle(cfg, host(), get("/health")));
        assert_eq!(h.response.status, 503, "{case}");
    }
}

#[test]
fn signature_header_with_either_secret() {
    let alert = r#"{"symbol":"XBTUSD","side":"sell","volume":"0.5"}"#;
    for key in [WEBHOOK_SECRET, PREVIOUS_SECRET] {
        for sig in [
            auth::sign_hex(key.as_bytes(), alert.as_bytes()),
            format!(
                "sha256={}",
                auth::sign_hex(key.as_bytes(), alert.as_bytes()).to_uppercase()
            ),
        ] {
            let step = handle(
                config(&[("webhook_secret_previous", PREVIOUS_SECRET)]),
                host(),
                post(
                    alert,
                    &[("x-signature", &sig), ("content-type", "application/json")],
                ),
            );
            assert!(is_call(step), "{key} {sig}");
        }
    }
}

#[test]
fn every_authentication_failure_is_the_same_401() {
    let good_sig = auth::sign_hex(WEBHOOK_SECRET.as_bytes(), b"{}");
    type Case<'a> = (String, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            LIMIT.replace("0123456789abcdef", "0123456789abcdeX"),
            vec![],
            "wrong_secret",
        ),
        (r#"{"symbol":"XBTUSD"}"#.into(), vec![], "missing_secret"),
        ("not json".into(), vec![], "unreadable_body"),
        (
            LIMIT.into(),
            vec![("x-signature", good_sig.clone())],
            "bad_signature",
        ),
        (
            LIMIT.into(),
            vec![("x-signature", "abc".into())],
            "malformed_signature",
        ),
        (
            LIMIT.into(),
            vec![("x-signature", good_sig[..63].to_string())],
            "malformed_signature",
        ),
    ];
    for (b, headers, reason) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let d = done(handle(config(&[]), host(), post(&b, &headers)));
        assert_eq!(d.response.status, 401, "{reason}");
        assert_eq!(body(&d), json!({"error":"unauthorized"}), "{reason}");
        let line: Value = serde_json::from_str(&d.log[0].text).unwrap();
        assert_eq!(line["event"], "auth_failed");
        assert_eq!(line["reason"], reason);
    }
}

#[test]
fn previous_secret_is_refused_when_not_configured() {
    let b = LIMIT.replace(WEBHOOK_SECRET, PREVIOUS_SECRET);
    assert_eq!(
        done(handle(config(&[]), host(), post(&b, &[])))
            .response
            .status,
        401
    );
    let step = handle(
        config(&[("webhook_secret_previous", PREVIOUS_SECRET)]),
        host(),
        post(&b, &[]),
    );
    assert!(is_call(step));
}

#[test]
fn signed_but_malformed_is_400_unsigned_is_401() {
    let raw = r#"{"symbol":"XBTUSD","side":"buy","volume":NaN}"#;
    let sig = auth::sign_hex(WEBHOOK_SECRET.as_bytes(), raw.as_bytes());
    let d = done(handle(
        config(&[]),
        host(),
        post(raw, &[("x-signature", &sig)]),
    ));
    assert_eq!(
        (d.response.status, body(&d)),
        (400, json!({"error":"malformed_json"}))
    );
    let d = done(handle(
        config(&[]),
        host(),
        post(raw, &[("content-type", "text/plain")]),
    ));
    assert_eq!(d.response.status, 401);
}

#[test]
fn size_and_content_type_rules() {
    let big = format!(r#"{{"comment":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
    let d = done(handle(config(&[]), host(), post(&big, &[])));
    assert_eq!(
        (d.response.status, body(&d)["error"].clone()),
        (413, json!("payload_too_large"))
    );
    for ct in [
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let d = done(handle(
            config(&[]),
            host(),
            post(LIMIT, &[("content-type", ct)]),
        ));
        assert_eq!(d.response.status, 415, "{ct}");
    }
    for ct in [
        "application/json",
        "text/plain; charset=utf-8",
        "Application/JSON",
        "",
    ] {
        let step = handle(config(&[]), host(), post(LIMIT, &[("content-type", ct)]));
        assert!(is_call(step), "{ct}");
    }
}

#[test]
fn field_errors_are_422_naming_the_field() {
    for (patch, field) in [
        (r#""volume":"1.25""#, r#""volume":"-1""#),
        (r#""side":"buy""#, r#""side":"long""#),
        (r#""price":"37500""#, r#""price":"37500","colour":"red""#),
    ]
    .map(|(from, to)| (LIMIT.replace(from, to), to))
    {
        let d = done(handle(config(&[]), host(), post(&patch, &[])));
        assert_eq!(d.response.status, 422, "{field}");
        assert_eq!(body(&d)["error"], "invalid_alert");
        assert_eq!(events(&d), ["alert_rejected"]);
    }
    let d = done(handle(
        config(&[]),
        host(),
        post(
            &LIMIT.replace(r#""price":"37500""#, r#""price":"37500","colour":"red""#),
            &[],
        ),
    ));
    assert_eq!(body(&d)["field"], "colour");
}

/// The names a settings source was asked for.
type Reads = std::rc::Rc<std::cell::RefCell<Vec<String>>>;

/// A settings source that records every name read.
fn recording(
    extra: &'static [(&'static str, &'static str)],
) -> (impl Fn(&str) -> Option<String>, Reads) {
    let read = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = read.clone();
    let lookup = move |name: &str| {
        log.borrow_mut().push(name.to_string());
        let base = [
            ("webhook_secret", WEBHOOK_SECRET),
            ("kraken_api_key", API_KEY),
            ("kraken_api_secret", API_SECRET),
            ("kraken_api_url", "http://127.0.0.1:18081"),
        ];
        extra
            .iter()
            .chain(base.iter())
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    (lookup, read)
}

#[test]
fn a_refused_alert_reads_only_the_settings_it_needs() {
    let (lookup, read) = recording(&[]);
    let wrong = LIMIT.replace(WEBHOOK_SECRET, "not-the-secret-not-the-secret-0123");
    let d = done(handle_with(&lookup, host(), post(&wrong, &[])));
    assert_eq!(d.response.status, 401);
    let mut names = read.borrow().clone();
    names.sort();
    let mut front = crate::config::FRONT_SETTINGS.to_vec();
    front.sort();
    assert_eq!(names, front);
}

#[test]
fn an_accepted_alert_reads_each_setting_once() {
    let (lookup, read) = recording(&[]);
    let mut w = World::with_replies([reply(PLACED)]);
    let d = w.run(handle_with(&lookup, host(), post(LIMIT, &[])));
    assert_eq!(body(&d)["status"], "placed");
    let names = read.borrow().clone();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "read twice: {names:?}");
    assert_eq!(unique.len(), crate::config::SETTINGS.len());
}

#[test]
fn an_unusable_setting_refuses_authenticated_alerts_only() {
    // No Kraken key: an unauthenticated caller learns nothing of it (401); an
    // authenticated alert is refused as misconfigured; /health names it.
    let (lookup, _) = recording(&[("kraken_api_key", "")]);
    let wrong = LIMIT.replace(WEBHOOK_SECRET, "not-the-secret-not-the-secret-0123");
    let d = done(handle_with(&lookup, host(), post(&wrong, &[])));
    assert_eq!(d.response.status, 401);
    let d = done(handle_with(&lookup, host(), post(LIMIT, &[])));
    assert_eq!(
        (d.response.status, body(&d)),
        (503, json!({"error":"misconfigured"}))
    );
    assert_eq!(events(&d), ["config_error"]);
    let health = done(handle_with(&lookup, host(), get("/health")));
    assert_eq!(body(&health)["problems"][0]["setting"], "kraken_api_key");
}

#[test]
fn short_secret_is_a_configuration_error() {
    let short = &WEBHOOK_SECRET[..31];
    let cfg = config(&[("webhook_secret", short)]);
    let d = done(handle(
        cfg.clone(),
        host(),
        post(&LIMIT.replace(WEBHOOK_SECRET, short), &[]),
    ));
    assert_eq!(
        (d.response.status, body(&d)),
        (503, json!({"error":"misconfigured"}))
    );
    assert_eq!(events(&d), ["config_error"]);
    assert!(d.log[0].stderr);
    let health = done(handle(cfg, host(), get("/health")));
    assert_eq!(health.response.status, 503);
    let h = body(&health);
    assert_eq!(h["status"], "misconfigured");
    assert_eq!(h["problems"][0]["setting"], "webhook_secret");
    assert!(!String::from_utf8_lossy(&health.response.body).contains("31"));
}

#[test]
fn a_kraken_otp_too_short_to_mask_is_named_and_corrupts_nothing() {
    // A key's 2FA password can be anything; masked wherever it appeared, `0` turned the
    // version into `***.1.***` and a txid into `OBZKKP-…***`.
    for otp in ["0", "1234"] {
        let cfg = config(&[
            ("kraken_otp", otp),
            ("notify_url", "https://chat.example/hooks/abcdef-0123"),
        ]);
        let health = done(handle(cfg.clone(), host(), get("/health")));
        assert_eq!(health.response.status, 503, "{otp}");
        let h = body(&health);
        assert_eq!(h["status"], "misconfigured");
        assert_eq!(h["problems"][0]["setting"], "kraken_otp", "{otp}");
        assert_eq!(h["version"], env!("CARGO_PKG_VERSION"), "{otp}");
        // Never used: an authenticated alert trades nothing.
        let d = done(handle(cfg.clone(), host(), post(LIMIT, &[])));
        assert_eq!(
            (d.response.status, body(&d)),
            (503, json!({"error":"misconfigured"})),
            "{otp}"
        );
        assert_eq!(events(&d), ["config_error"]);
        let line: Value = serde_json::from_str(&d.log[0].text).unwrap();
        assert_eq!(line["problems"], json!(["kraken_otp"]), "{otp}");
        assert_eq!(line["request_id"], "req-1", "{otp}");
        let mut texts = vec![
            String::from_utf8_lossy(&health.response.body).into_owned(),
            String::from_utf8_lossy(&d.response.body).into_owned(),
        ];
        texts.extend(d.log.iter().chain(&health.log).map(|l| l.text.clone()));
        // A misconfigured bridge places nothing, so it notifies nothing either.
        assert!(d.notices.is_empty() && health.notices.is_empty(), "{otp}");
        for text in &texts {
            assert!(!text.contains("***"), "{otp}: {text}");
        }
    }
}

#[test]
fn health_and_config_endpoints() {
    let fetch = |path: &str, cfg: Config| done(handle(cfg, host(), get(path)));
    let h = fetch("/health", config(&[]));
    assert_eq!(h.response.status, 200);
    let hb = body(&h);
    assert_eq!(hb["status"], "ok");
    assert_eq!(hb["trading_enabled"], true);
    assert_eq!(hb["dry_run"], false);
    assert_eq!(hb["state_store"], "default");
    assert_eq!(hb["version"], env!("CARGO_PKG_VERSION"));

    assert_eq!(fetch("/config", config(&[])).response.status, 404);
    let c = fetch(
        "/config",
        config(&[
            ("environment", "development"),
            ("kraken_otp", "999999-otp-value"),
        ]),
    );
    assert_eq!(c.response.status, 200);
    let cb = body(&c);
    assert_eq!(cb["webhook_secret"], "***");
    assert_eq!(cb["kraken_api_secret"], "***");
    assert_eq!(cb["kraken_otp"], "***");
    assert_eq!(cb["webhook_secret_previous"], Value::Null);
    assert_eq!(cb["kraken_api_url"], "http://127.0.0.1:18081");
    let text = String::from_utf8_lossy(&c.response.body);
    for s in [WEBHOOK_SECRET, API_KEY, API_SECRET, "999999-otp-value"] {
        assert!(!text.contains(s));
    }
}

#[test]
fn kill_switch_and_dry_run() {
    let d = done(handle(
        config(&[("trading_enabled", "false")]),
        host(),
        post(LIMIT, &[]),
    ));
    assert_eq!(
        (d.response.status, body(&d)),
        (423, json!({"error":"trading_disabled"}))
    );
    assert_eq!(events(&d), ["trading_disabled"]);

    let (call, pending) = sends(handle(
        config(&[("dry_run", "true")]),
        host(),
        post(LIMIT, &[]),
    ));
    assert!(String::from_utf8_lossy(&call.body).contains("&validate=true&"));
    let d = resume(
        pending,
        reply(
            r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"}}}"#,
        ),
    );
    assert_eq!(
        body(&d),
        json!({"status":"validated","description":"buy 1.25000000 XBTUSD @ limit 37500.0"})
    );
    assert_eq!(events(&d), ["order_validated"]);
}

const NONE_OPEN: &str = r#"{"error":[],"result":{"open":{}}}"#;
const NONE_CLOSED: &str = r#"{"error":[],"result":{"closed":{},"count":0}}"#;
const PLACED: &str = r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"},"txid":["OAAAAA-BBBBB-CCCCCC"]}}"#;

fn run_with(replies: Vec<Transport>) -> (Done, World) {
    let mut world = World::with_replies(replies);
    let d = world.run(handle(config(&[]), host(), post(LIMIT, &[])));
    assert!(world.replies.is_empty(), "unused Kraken answers");
    (d, world)
}

fn methods(world: &World) -> Vec<&'static str> {
    world.calls.iter().map(|c| c.kraken_method).collect()
}

#[test]
fn kraken_outcomes() {
    let (d, _) = run_with(vec![reply(r#"{"error":["EOrder:Insufficient funds"]}"#)]);
    assert_eq!(
        (d.response.status, body(&d)),
        (
            422,
            json!({"error":"order_rejected","kraken_error":"EOrder:Insufficient funds"})
        )
    );
    assert_eq!(events(&d), ["order_rejected"]);

    let (d, w) = run_with(vec![
        reply(r#"{"error":["EService:Unavailable"]}"#),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    assert_eq!(d.response.status, 202);
    assert_eq!(body(&d)["status"], "pending");
    assert_eq!(events(&d), ["order_pending"]);
    assert!(d.log[0].stderr);
    assert_eq!(methods(&w), ["AddOrder", "OpenOrders", "ClosedOrders"]);

    let (d, _) = run_with(vec![
        Transport::Lost("timed out".into()),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    assert_eq!(d.response.status, 202);

    let (d, _) = run_with(vec![reply(r#"{"error":["EAPI:Rate limit exceeded"]}"#)]);
    assert_eq!(
        (d.response.status, d.response.header("retry-after")),
        (503, Some("5"))
    );

    let (d, _) = run_with(vec![Transport::NotSent("connection refused".into())]);
    assert_eq!(d.response.status, 503);
}

#[test]
fn stale_alerts() {
    let at = |ts: &str| LIMIT.replace(r#""symbol""#, &format!(r#""timestamp":"{ts}","symbol""#));
    assert!(is_call(handle(
        config(&[]),
        host(),
        post(&at("2025-11-28T18:39:00Z"), &[])
    )));
    let d = done(handle(
        config(&[]),
        host(),
        post(&at("2025-11-28T18:30:00Z"), &[]),
    ));
    assert_eq!(
        (d.response.status, body(&d)),
        (401, json!({"error":"stale"}))
    );
    assert_eq!(events(&d), ["stale"]);
    let d = done(handle(
        config(&[]),
        host(),
        post(&at("2025-11-28T18:50:00Z"), &[]),
    ));
    assert_eq!(d.response.status, 401);
}

#[test]
fn every_response_has_the_security_headers() {
    let d = done(handle(config(&[]), host(), get("/nope")));
    assert_eq!(d.response.status, 404);
    assert_eq!(d.response.header("x-request-id"), Some("req-1"));
    for (k, v) in crate::response::SECURITY_HEADERS {
        assert_eq!(d.response.header(k), Some(*v));
    }
    let d = done(handle(config(&[]), host(), get("/webhook")));
    assert_eq!(
        (d.response.status, d.response.header("allow")),
        (405, Some("POST"))
    );
}

#[test]
fn log_level_filters_events() {
    let d = done(handle(
        config(&[("log_level", "error")]),
        host(),
        post("nope", &[]),
    ));
    assert_eq!(d.response.status, 401);
    assert!(d.log.is_empty());
}

#[test]
fn secrets_never_leave_in_logs_or_responses() {
    // A trader pastes the webhook secret into the comment; development detail echoes fields.
    let b = LIMIT.replace(
        r#""price":"37500""#,
        &format!(r#""price":"37500","comment":"{WEBHOOK_SECRET}","bogus_{WEBHOOK_SECRET}":1"#),
    );
    let d = done(handle(
        config(&[("environment", "development")]),
        host(),
        post(&b, &[]),
    ));
    assert_eq!(d.response.status, 422);
    let all = format!("{}{:?}", String::from_utf8_lossy(&d.response.body), d.log);
    assert!(!all.contains(WEBHOOK_SECRET), "{all}");
    let secret = crate::secret::Secret::new(API_SECRET);
    assert!(!all.contains(&String::from_utf8_lossy(secret.expose_for(Use::Redaction)).to_string()));
}

#[test]
fn test_config_is_usable() {
    assert!(config(&[]).is_usable(), "{:?}", config(&[]).problems);
}

// ---- exactly once: the outcome state machine -------------------------------------------

fn alert_with_id(id: &str) -> String {
    LIMIT.replace(r#""symbol""#, &format!(r#""id":"{id}","symbol""#))
}

fn lookup_found(list: &str, cl: &str) -> Transport {
    reply(&format!(
        r#"{{"error":[],"result":{{"{list}":{{"OFOUND-AAAAA-BBBBBB":{{"cl_ord_id":"{cl}","status":"closed","descr":{{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"}}}}}}}}}}"#
    ))
}

impl World {
    /// One alert through the core, at the world's clock.
    fn send(&mut self, config: Config, body: &str) -> Done {
        let host = Host {
            now: self.now(),
            ..host()
        };
        self.run(handle(config, host, post(body, &[])))
    }
}

#[test]
fn a_resend_replays_the_first_outcome_and_places_nothing() {
    let mut w = World::with_replies([reply(PLACED)]);
    let first = w.send(config(&[]), LIMIT);
    assert_eq!(body(&first)["status"], "placed");
    for _ in 0..3 {
        let again = w.send(config(&[]), LIMIT);
        assert_eq!(again.response.status, 200);
        assert_eq!(
            body(&again),
            json!({"status":"duplicate","outcome":"placed","txid":["OAAAAA-BBBBB-CCCCCC"],
                   "description":"buy 1.25000000 XBTUSD @ limit 37500.0",
                   "cl_ord_id": DedupeKey::new(None, LIMIT.as_bytes()).cl_ord_id()})
        );
        assert_eq!(events(&again), ["alert_duplicate"]);
    }
    assert_eq!(methods(&w), ["AddOrder"]);
}

#[test]
fn an_id_is_the_key_whatever_the_body() {
    let mut w = World::with_replies([reply(PLACED)]);
    w.send(config(&[]), &alert_with_id("s1-t1"));
    let other_body = alert_with_id("s1-t1").replace("1.25", "2");
    let d = w.send(config(&[]), &other_body);
    assert_eq!(body(&d)["status"], "duplicate");
    // An id is kept 24 hours: still a duplicate 23 hours later.
    w.clock += 23 * 3_600 * 1_000_000;
    let d = w.send(config(&[]), &other_body);
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(methods(&w), ["AddOrder"]);
}

#[test]
fn a_body_hash_is_kept_for_the_dedupe_window_only() {
    let mut w = World::with_replies([reply(PLACED), reply(PLACED)]);
    w.send(config(&[]), LIMIT);
    w.clock += 59 * 1_000_000;
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["status"], "duplicate");
    w.clock += 2 * 1_000_000;
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(methods(&w), ["AddOrder", "AddOrder"]);
}

#[test]
fn a_fresh_claim_is_a_duplicate_and_a_stale_one_is_looked_up() {
    let key = DedupeKey::new(None, LIMIT.as_bytes());
    let claim = crate::idempotency::Record {
        state: crate::idempotency::RecordState::InFlight,
        first_seen: NOW.secs(),
        cl_ord_id: key.cl_ord_id(),
        status: 0,
        body: Value::Null,
        owner: "another-delivery".into(),
        claimed_at: 0,
    };
    let mut w = World::with_replies([]);
    w.store
        .insert(key.store_keys(NOW.secs(), 60)[0].clone(), claim.encode());
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["outcome"], "in_flight");
    assert!(w.calls.is_empty());

    // Eleven seconds on, the claimant is dead: Kraken is asked first, and has the order.
    w.clock += 11 * 1_000_000;
    w.replies.extend([lookup_found("closed", &key.cl_ord_id())]);
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(body(&d)["txid"], json!(["OFOUND-AAAAA-BBBBBB"]));
    // An open order needs no look-up: Kraken refuses a second one with its cl_ord_id.
    assert_eq!(methods(&w), ["ClosedOrders"]);
}

#[test]
fn the_rate_limit_counts_accepted_alerts_per_minute() {
    let mut w = World::with_replies([reply(PLACED), reply(PLACED)]);
    let cfg = || config(&[("rate_limit_per_minute", "2")]);
    for i in 0..2 {
        let d = w.send(cfg(), &alert_with_id(&format!("r{i}")));
        assert_eq!(d.response.status, 200);
    }
    let d = w.send(cfg(), &alert_with_id("r2"));
    assert_eq!(
        (d.response.status, body(&d)),
        (429, json!({"error":"rate_limited"}))
    );
    assert!(d.response.header("retry-after").is_some());
    assert_eq!(events(&d), ["rate_limited"]);
    // Duplicates do not count, and are still answered.
    let d = w.send(cfg(), &alert_with_id("r0"));
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(w.calls.len(), 2);
}

#[test]
fn a_certain_refusal_drops_the_claim_so_a_resend_may_trade() {
    let mut w = World::with_replies([
        reply(r#"{"error":["EAPI:Rate limit exceeded"]}"#),
        reply(PLACED),
    ]);
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(d.response.status, 503);
    let key = DedupeKey::new(None, LIMIT.as_bytes()).store_keys(NOW.secs(), 60)[0].clone();
    let released = crate::idempotency::Record::decode(&w.store[&key]).unwrap();
    assert_eq!(released.state, crate::idempotency::RecordState::Released);
    // The resend takes the released claim over and trades, without a look-up (the 503 was
    // certain).
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(methods(&w), ["AddOrder", "AddOrder"]);
}

#[test]
fn an_ambiguous_answer_is_looked_up_and_never_blindly_resent() {
    let cl = DedupeKey::new(None, LIMIT.as_bytes()).cl_ord_id();
    let (d, w) = run_with(vec![
        Transport::Reply {
            status: 502,
            body: b"bad gateway".to_vec(),
        },
        lookup_found("open", &cl),
    ]);
    assert_eq!(d.response.status, 200);
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(body(&d)["txid"], json!(["OFOUND-AAAAA-BBBBBB"]));
    assert_eq!(methods(&w), ["AddOrder", "OpenOrders"]);

    // Absent, but the order could still land before its deadline: pending, no resend.
    let (d, w) = run_with(vec![
        reply(r#"{"error":["EGeneral:Internal error"]}"#),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    assert_eq!(d.response.status, 202);
    assert_eq!(methods(&w), ["AddOrder", "OpenOrders", "ClosedOrders"]);
}

#[test]
fn certainly_absent_after_the_deadline_is_resent_once() {
    let (d, w) = run_with(vec![
        reply(r#"{"error":["EService:Deadline elapsed"]}"#),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
        reply(PLACED),
    ]);
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(
        methods(&w),
        ["AddOrder", "OpenOrders", "ClosedOrders", "AddOrder"]
    );
    let cl = |c: &Call| {
        String::from_utf8_lossy(&c.body)
            .split("cl_ord_id=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        cl(&w.calls[0]),
        cl(&w.calls[3]),
        "the resend keeps the cl_ord_id"
    );

    // A second ambiguity after the one resend: pending.
    let (d, w) = run_with(vec![
        reply(r#"{"error":["EService:Deadline elapsed"]}"#),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
        reply(r#"{"error":["EService:Deadline elapsed"]}"#),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    assert_eq!(d.response.status, 202);
    assert_eq!(methods(&w).iter().filter(|m| **m == "AddOrder").count(), 2);
}

/// Kraken sometimes writes a space after the category (`EAPI: Invalid nonce`): the
/// refusal is the same, for AddOrder and for the look-up after an unclear answer.
#[test]
fn a_nonce_refusal_written_with_a_space_is_retried_too() {
    let spaced = || reply(r#"{"error":["EAPI: Invalid nonce"]}"#);
    let (d, w) = run_with(vec![spaced(), reply(PLACED)]);
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(w.waits.len(), 1);
    assert_eq!(methods(&w), ["AddOrder", "AddOrder"]);

    let (d, w) = run_with(vec![
        Transport::Lost("reset".into()),
        spaced(),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    assert_eq!(d.response.status, 202, "{:?}", body(&d));
    assert_eq!(w.waits.len(), 1);
    assert_eq!(
        methods(&w),
        ["AddOrder", "OpenOrders", "OpenOrders", "ClosedOrders"]
    );
}

#[test]
fn a_clean_nonce_refusal_is_retried_with_jitter_and_a_fresh_nonce() {
    let (d, w) = run_with(vec![
        reply(r#"{"error":["EAPI:Invalid nonce"]}"#),
        reply(r#"{"error":["EAPI:Invalid nonce"]}"#),
        reply(PLACED),
    ]);
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(w.waits.len(), 2);
    assert!(
        w.waits.iter().all(|ms| (10..=40).contains(ms)),
        "{:?}",
        w.waits
    );
    let nonce = |c: &Call| -> u64 {
        String::from_utf8_lossy(&c.body).split('&').next().unwrap()[6..]
            .parse()
            .unwrap()
    };
    assert!(nonce(&w.calls[0]) < nonce(&w.calls[1]) && nonce(&w.calls[1]) < nonce(&w.calls[2]));

    // After an unanswered attempt, a nonce refusal may mean the first one arrived.
    let mut w = World::with_replies([
        Transport::Lost("reset".into()),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    // (The look-up answers absent, and the deadline has not passed: pending.)
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(d.response.status, 202);
}

#[test]
fn without_a_store_kraken_is_asked_first() {
    let portable = || Host {
        state_store: None,
        store_probe: None,
        flavour: "wasi",
        ..host()
    };
    let cl = DedupeKey::new(None, LIMIT.as_bytes()).cl_ord_id();
    let mut w = World::with_replies([reply(NONE_CLOSED), reply(PLACED)]);
    let d = w.run(handle(config(&[]), portable(), post(LIMIT, &[])));
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(methods(&w), ["ClosedOrders", "AddOrder"]);
    assert!(w.ops.is_empty(), "the portable flavour has no store");

    // Closed already: a duplicate, nothing sent.
    let mut w = World::with_replies([lookup_found("closed", &cl)]);
    let d = w.run(handle(config(&[]), portable(), post(LIMIT, &[])));
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(methods(&w), ["ClosedOrders"]);

    // Still open: Kraken refuses the second order with the same cl_ord_id itself.
    let mut w = World::with_replies([
        reply(NONE_CLOSED),
        reply(r#"{"error":["EOrder:Duplicate order"]}"#),
        lookup_found("open", &cl),
    ]);
    let d = w.run(handle(config(&[]), portable(), post(LIMIT, &[])));
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(methods(&w), ["ClosedOrders", "AddOrder", "OpenOrders"]);

    // A failed look-up sent nothing: 503, TradingView may resend.
    let mut w = World::with_replies([Transport::NotSent("refused".into())]);
    let d = w.run(handle(config(&[]), portable(), post(LIMIT, &[])));
    assert_eq!(d.response.status, 503);

    // A store that fails is not taken for no store: the alert cannot be claimed, nothing
    // is sent, 503 (TradingView resends).
    let mut w = World::with_replies([]);
    w.store_fails = true;
    let d = w.run(handle(config(&[]), host(), post(LIMIT, &[])));
    assert_eq!(d.response.status, 503);
    assert!(methods(&w).is_empty());
}

#[test]
fn the_time_budget_bounds_every_call() {
    // Each operation takes 400 ms: the budget leaves room for few calls.
    let mut w = World::with_replies([
        Transport::Lost("timed out".into()),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    w.tick_us = 400_000;
    let d = w.run(handle(config(&[]), host(), post(LIMIT, &[])));
    assert_eq!(d.response.status, 202, "may exist: pending, never 5xx");
    let mut spent = 0;
    for c in &w.calls {
        assert!(c.timeout_ms <= crate::outcome::BUDGET_MS - crate::outcome::RESPONSE_MARGIN_MS);
        spent += 1;
    }
    assert!(spent < 4);
    // Out of time before anything was sent (the pairs took the whole budget): 503.
    let mut w = World::with_replies([]);
    w.tick_us = 2_300_000;
    let d = w.run(handle(config(&[]), host(), post(LIMIT, &[])));
    assert_eq!(d.response.status, 503);
    assert!(w.calls.is_empty());
}

#[test]
fn the_store_is_pruned_on_the_first_alert_of_a_minute() {
    let mut w = World::with_replies([reply(PLACED)]);
    w.store.insert("dd:60:1:body:old".into(), b"{}".to_vec());
    w.store.insert("rl:3".into(), b"9".to_vec());
    w.send(config(&[]), LIMIT);
    assert!(w.ops.contains(&StoreOp::Keys));
    assert!(!w.store.contains_key("dd:60:1:body:old"));
    assert!(!w.store.contains_key("rl:3"));
    assert!(w.store.keys().any(|k| k.starts_with("dd:60:")));
}

#[test]
fn require_timestamp() {
    let d = done(handle(
        config(&[("require_timestamp", "true")]),
        host(),
        post(LIMIT, &[]),
    ));
    assert_eq!(body(&d)["field"], "timestamp");
    let with_ts = LIMIT.replace(
        r#""symbol""#,
        r#""timestamp":"2025-11-28T18:40:00Z","symbol""#,
    );
    assert!(is_call(handle(
        config(&[("require_timestamp", "true")]),
        host(),
        post(&with_ts, &[])
    )));
}

// ---- network controls and CORS -----------------------------------------------------------

fn from(addr: Option<&str>) -> Host {
    Host {
        client_addr: addr.map(str::to_string),
        ..host()
    }
}

#[test]
fn allowed_ips_come_before_authentication_and_fail_closed() {
    let cfg = || config(&[("allowed_ips", "52.89.214.238,10.0.0.0/8,2001:db8::/32")]);
    for ok in ["52.89.214.238:5000", "10.20.30.40:1", "[2001:db8::7]:443"] {
        assert!(
            is_call(handle(cfg(), from(Some(ok)), post(LIMIT, &[]))),
            "{ok}"
        );
    }
    for (addr, trusted) in [
        (Some("52.89.214.239:5000"), true),
        (None, false),
        (Some("garbage"), false),
    ] {
        // Even a wrong secret gets 403, not 401: the caller learns nothing more.
        let d = done(handle(cfg(), from(addr), post("not even json", &[])));
        assert_eq!(
            (d.response.status, body(&d)),
            (403, json!({"error":"forbidden"})),
            "{addr:?}"
        );
        let line: Value = serde_json::from_str(&d.log[0].text).unwrap();
        assert_eq!(line["event"], "ip_denied");
        assert_eq!(line["trusted_address"], trusted);
    }
}

#[test]
fn client_ip_header_replaces_the_host_address() {
    let cfg = || {
        config(&[
            ("allowed_ips", "52.89.214.238"),
            ("client_ip_header", "X-Real-IP"),
        ])
    };
    // The host's own address no longer counts; the proxy's header does.
    let d = done(handle(
        cfg(),
        from(Some("52.89.214.238:1")),
        post(LIMIT, &[]),
    ));
    assert_eq!(d.response.status, 403);
    assert!(is_call(handle(
        cfg(),
        from(Some("10.0.0.1:1")),
        post(LIMIT, &[("x-real-ip", "52.89.214.238")])
    )));
    // A list is not one trustworthy address.
    let d = done(handle(
        cfg(),
        from(None),
        post(LIMIT, &[("x-real-ip", "1.1.1.1, 52.89.214.238")]),
    ));
    assert_eq!(d.response.status, 403);
}

#[test]
fn a_broken_allow_list_denies_all_but_health() {
    let cfg = || config(&[("allowed_ips", "52.89.214.238/99")]);
    let d = done(handle(
        cfg(),
        from(Some("52.89.214.238:1")),
        post(LIMIT, &[]),
    ));
    assert_eq!(d.response.status, 403);
    let h = done(handle(cfg(), from(None), get("/health")));
    assert_eq!(h.response.status, 503);
    assert_eq!(body(&h)["problems"][0]["setting"], "allowed_ips");
}

#[test]
fn cors_only_for_listed_origins() {
    let cfg = || config(&[("cors_allowed_origins", "https://dash.example")]);
    let with_origin = |o: &str, method: &str| Request {
        method: method.into(),
        path: "/health".into(),
        headers: vec![("origin".into(), o.into())],
        body: vec![],
    };
    let d = done(handle(
        cfg(),
        host(),
        with_origin("https://dash.example", "GET"),
    ));
    assert_eq!(
        d.response.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    let d = done(handle(
        cfg(),
        host(),
        with_origin("https://evil.example", "GET"),
    ));
    assert_eq!(d.response.header("access-control-allow-origin"), None);
    let d = done(handle(
        config(&[]),
        host(),
        with_origin("https://dash.example", "GET"),
    ));
    assert_eq!(d.response.header("access-control-allow-origin"), None);
    let d = done(handle(
        cfg(),
        host(),
        with_origin("https://dash.example", "OPTIONS"),
    ));
    assert_eq!(d.response.status, 200);
    assert_eq!(
        d.response.header("access-control-allow-methods"),
        Some("GET")
    );
    let d = done(handle(
        cfg(),
        host(),
        with_origin("https://evil.example", "OPTIONS"),
    ));
    assert_eq!(d.response.status, 405);
}

#[test]
fn a_failed_claim_places_nothing_and_the_resend_trades() {
    // The store reads work but the claim write fails: the alert cannot be claimed, so
    // nothing is placed and TradingView resends on the 503.
    let mut w = World::with_replies([reply(PLACED)]);
    // Fail only the claim (the first Set of a `dd:` key).
    let mut claim_failed = false;
    let d = w.drive_limit(|w, op| match op {
        StoreOp::Set(k, _) if k.starts_with("dd:") && !claim_failed => {
            claim_failed = true;
            StoreReply::Failed("full".into())
        }
        op => w.store_op(op),
    });
    assert!(claim_failed);
    assert_eq!(d.response.status, 503);
    assert!(d.response.header("retry-after").is_some());
    assert!(methods(&w).is_empty(), "nothing reaches Kraken");
    // The resend, on a store that works again, trades once.
    let d = w.drive_limit(|w, op| w.store_op(op));
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(methods(&w), ["AddOrder"]);
}

#[test]
fn a_duplicate_cl_ord_id_refusal_is_answered_as_a_duplicate() {
    let cl = DedupeKey::new(None, LIMIT.as_bytes()).cl_ord_id();
    let (d, w) = run_with(vec![
        reply(r#"{"error":["EOrder:Duplicate order"]}"#),
        lookup_found("open", &cl),
    ]);
    assert_eq!(d.response.status, 200);
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(body(&d)["outcome"], "placed");
    assert_eq!(body(&d)["txid"], json!(["OFOUND-AAAAA-BBBBBB"]));
    assert_eq!(methods(&w), ["AddOrder", "OpenOrders"]);
}

#[test]
fn the_first_recorded_outcome_is_never_overwritten() {
    // Another delivery recorded `placed` while this one was talking to Kraken.
    let mut w = World::with_replies([reply(r#"{"error":["EOrder:Insufficient funds"]}"#)]);
    let mut step = handle(config(&[]), host(), post(LIMIT, &[]));
    let key = DedupeKey::new(None, LIMIT.as_bytes()).store_keys(NOW.secs(), 60)[0].clone();
    let winner = crate::idempotency::Record {
        state: crate::idempotency::RecordState::Done,
        first_seen: NOW.secs(),
        cl_ord_id: DedupeKey::new(None, LIMIT.as_bytes()).cl_ord_id(),
        status: 200,
        body: json!({"status":"placed","txid":["OWIN"]}),
        owner: "winner".into(),
        claimed_at: 0,
    };
    let d = loop {
        step = match step {
            Step::Done(d) => break d,
            Step::Answer(_, p) => p.resume(Input::Answered, NOW),
            Step::Call(call, p) => {
                let r = market_data(&call).unwrap_or_else(|| {
                    // The winner records its outcome while our AddOrder is in flight.
                    w.store.insert(key.clone(), winner.encode());
                    w.replies.pop_front().expect("reply")
                });
                p.resume(Input::Kraken(r), NOW)
            }
            Step::Store(op, p) => {
                let r = w.store_op(op);
                p.resume(Input::Store(r), NOW)
            }
            Step::Wait(_, p) => p.resume(Input::Waited, NOW),
        };
    };
    assert_eq!(d.response.status, 422);
    let kept = crate::idempotency::Record::decode(&w.store[&key]).unwrap();
    assert_eq!(kept.body["txid"], json!(["OWIN"]));
}

#[test]
fn an_unknown_pair_from_kraken_drops_the_cached_pair() {
    let mut w = World::with_replies([reply(r#"{"error":["EQuery:Unknown asset pair"]}"#)]);
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(d.response.status, 422);
    let key = format!("{}XBTUSD", crate::outcome::PAIR_KEY_PREFIX);
    assert!(w.ops.contains(&StoreOp::Delete(key.clone())));
    assert!(!w.store.contains_key(&key));
}

fn asset_pairs_calls(w: &World) -> Vec<&str> {
    w.public
        .iter()
        .filter(|u| u.contains("/AssetPairs"))
        .map(|u| u.rsplit('/').next().unwrap())
        .collect()
}

#[test]
fn a_symbol_is_asked_of_kraken_by_name_then_cached_alone() {
    let mut w = World::with_replies([reply(PLACED), reply(PLACED)]);
    let d = w.send(config(&[]), &alert_with_id("c1"));
    assert_eq!(body(&d)["status"], "placed");
    // Only that pair was asked for, and only it is cached, under its own key.
    assert_eq!(asset_pairs_calls(&w), ["AssetPairs?pair=XBTUSD"]);
    let key = format!("{}XBTUSD", crate::outcome::PAIR_KEY_PREFIX);
    let cached: Value = serde_json::from_slice(&w.store[&key]).unwrap();
    assert_eq!(cached["pair"]["id"], "XXBTZUSD");
    assert!(w.store[&key].len() < 512, "{} bytes", w.store[&key].len());
    // The next alert reads the cached pair: no AssetPairs call.
    let d = w.send(config(&[]), &alert_with_id("c2"));
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(asset_pairs_calls(&w).len(), 1);
    // An hour later it is fetched again.
    w.clock += (crate::outcome::PAIRS_TTL_SECS + 1) * 1_000_000;
    w.replies.push_back(reply(PLACED));
    let d = w.send(config(&[]), &alert_with_id("c3"));
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(asset_pairs_calls(&w).len(), 2);
}

#[test]
fn trader_spellings_are_asked_with_krakens_names_then_the_whole_list() {
    let portable = || Host {
        state_store: None,
        store_probe: None,
        flavour: "wasi",
        ..host()
    };
    // BTCUSD is not a Kraken name: XBTUSD is asked next.
    let b = LIMIT.replace(r#""symbol":"XBTUSD""#, r#""symbol":"KRAKEN:BTCUSD""#);
    let mut w = World::with_replies([reply(NONE_CLOSED), reply(PLACED)]);
    w.unknown_names = vec!["BTCUSD"];
    let d = w.run(handle(config(&[]), portable(), post(&b, &[])));
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(
        asset_pairs_calls(&w),
        ["AssetPairs?pair=BTCUSD", "AssetPairs?pair=XBTUSD"]
    );
    // A spelling no name matches falls back to the whole list, once.
    let b = LIMIT.replace(r#""symbol":"XBTUSD""#, r#""symbol":"btc/usd""#);
    let mut w = World::with_replies([reply(NONE_CLOSED), reply(PLACED)]);
    w.unknown_names = vec!["BTC/USD", "XBT/USD"];
    let d = w.run(handle(config(&[]), portable(), post(&b, &[])));
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(
        asset_pairs_calls(&w),
        [
            "AssetPairs?pair=BTC%2FUSD",
            "AssetPairs?pair=XBT%2FUSD",
            "AssetPairs"
        ]
    );
    // A perpetual is refused before Kraken is asked anything.
    let b = LIMIT.replace(r#""symbol":"XBTUSD""#, r#""symbol":"BTCUSDT.P""#);
    let mut w = World::with_replies([]);
    let d = w.run(handle(config(&[]), portable(), post(&b, &[])));
    assert_eq!(body(&d)["error"], "unknown_symbol");
    assert!(w.public.is_empty());
}

/// Drives one delivery of LIMIT; `between` runs right after its in-flight record is written,
/// as another delivery of the same alert would in the same instant.
fn race(w: &mut World, between: impl Fn(&mut World, &str)) -> Done {
    let key = DedupeKey::new(None, LIMIT.as_bytes()).store_keys(NOW.secs(), 60)[0].clone();
    let d = w.drive_limit(|w, op| {
        let is_claim = matches!(&op, StoreOp::Set(k, _) if *k == key);
        let r = w.store_op(op);
        if is_claim {
            between(w, &key);
        }
        r
    });
    assert!(
        w.calls.is_empty() && w.public.is_empty(),
        "Kraken was asked"
    );
    d
}

#[test]
fn a_claim_counted_first_by_another_delivery_backs_off() {
    // Another delivery of the same alert increments the claim counter first.
    let mut w = World::with_replies([]);
    let d = race(&mut w, |w, _| {
        let counter = DedupeKey::new(None, LIMIT.as_bytes()).claim_keys(NOW.millis())[0].clone();
        assert_eq!(
            w.store_op(StoreOp::Increment(counter, 1)),
            StoreReply::Count(1)
        );
    });
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(body(&d)["outcome"], "in_flight");
}

#[test]
fn without_atomics_a_claim_overwritten_in_the_same_instant_backs_off() {
    // A host without atomics: another delivery overwrites our claim between our write and
    // read-back.
    let mut w = World::with_replies([]);
    w.no_atomics = true;
    let d = race(&mut w, |w, key| {
        let theirs = crate::idempotency::Record {
            state: crate::idempotency::RecordState::InFlight,
            first_seen: NOW.secs(),
            cl_ord_id: DedupeKey::new(None, LIMIT.as_bytes()).cl_ord_id(),
            status: 0,
            body: Value::Null,
            owner: "the-other-delivery".into(),
            claimed_at: 0,
        };
        w.store.insert(key.to_string(), theirs.encode());
    });
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(body(&d)["outcome"], "in_flight");
}

#[test]
fn without_atomics_every_order_is_looked_up_first() {
    let mut w = World::with_replies([reply(NONE_CLOSED), reply(PLACED)]);
    w.no_atomics = true;
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(methods(&w), ["ClosedOrders", "AddOrder"]);
    // The resend is still answered from the record.
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(methods(&w), ["ClosedOrders", "AddOrder"]);
}

#[test]
fn a_slow_store_claims_nothing_and_releases_its_record() {
    // The in-flight record took longer than the claim window to write: 503, released, and
    // the resend trades.
    let mut w = World::with_replies([reply(PLACED)]);
    let mut step = handle(config(&[]), host(), post(LIMIT, &[]));
    let d = loop {
        step = match step {
            Step::Done(d) => break d,
            Step::Answer(_, p) => p.resume(Input::Answered, NOW),
            Step::Store(op, p) => {
                let slow = matches!(&op, StoreOp::Set(k, _) if k.starts_with("dd:"));
                let r = w.store_op(op);
                let late = if slow {
                    crate::idempotency::CLAIM_WINDOW_MS * 1_000 + 1_000
                } else {
                    0
                };
                p.resume(Input::Store(r), Now(NOW.0 + late))
            }
            Step::Call(call, _) => panic!("must not call Kraken: {}", call.url),
            Step::Wait(..) => panic!("must not wait"),
        };
    };
    assert_eq!(d.response.status, 503);
    assert!(!w
        .ops
        .iter()
        .any(|op| matches!(op, StoreOp::Increment(k, _) if k.starts_with("dc:"))));
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["status"], "placed");
}

/// LIMIT's record key and a `released` record under it.
fn released_limit_record() -> (String, crate::idempotency::Record) {
    let key = DedupeKey::new(None, LIMIT.as_bytes());
    let record = crate::idempotency::Record {
        state: crate::idempotency::RecordState::Released,
        first_seen: NOW.secs(),
        cl_ord_id: key.cl_ord_id(),
        status: 0,
        body: Value::Null,
        owner: "gone".into(),
        claimed_at: 0,
    };
    (key.store_keys(NOW.secs(), 60)[0].clone(), record)
}

#[test]
fn a_released_claim_is_taken_over_by_one_delivery_only() {
    // Another delivery swaps it first, between our read and our swap.
    let d = rival_takes_over(true);
    assert_eq!(body(&d)["outcome"], "in_flight");
}

/// One delivery of LIMIT finds its record released; another delivery takes it over just as
/// this one swaps. `honest`: the swap fails as it should; otherwise it is reported won but
/// writes nothing, as Spin 4.0.2 on Redis reports an aborted transaction.
fn rival_takes_over(honest: bool) -> Done {
    let (record_key, released) = released_limit_record();
    let mut w = World::with_replies([]);
    w.store.insert(record_key.clone(), released.encode());
    let d = w.drive_limit(|w, op| {
        let swap = matches!(&op, StoreOp::Swap { .. });
        if swap {
            let mut other = released.clone();
            other.state = crate::idempotency::RecordState::InFlight;
            other.owner = "other".into();
            w.store.insert(record_key.clone(), other.encode());
        }
        if swap && !honest {
            StoreReply::Swapped(true)
        } else {
            w.store_op(op)
        }
    });
    assert!(
        w.calls.is_empty() && w.public.is_empty(),
        "Kraken was asked"
    );
    d
}

#[test]
fn an_owner_that_answers_503_releases_a_record_a_loser_overwrote() {
    // A delivery that lost the claim overwrote the owner's in-flight record with its own;
    // the owner's 503 must still release it, or the resend would answer `in_flight`.
    let mut w = World::with_replies([reply(r#"{"error":["EAPI:Rate limit exceeded"]}"#)]);
    let key = DedupeKey::new(None, LIMIT.as_bytes());
    let record_key = key.store_keys(NOW.secs(), 60)[0].clone();
    let mut overwritten = false;
    let d = w.drive_limit(|w, op| {
        let tentative = matches!(&op, StoreOp::Set(k, _) if *k == record_key);
        let r = w.store_op(op);
        if tentative && !overwritten {
            overwritten = true;
            let mut theirs = released_limit_record().1;
            theirs.state = crate::idempotency::RecordState::InFlight;
            theirs.owner = "the-loser".into();
            w.store.insert(record_key.clone(), theirs.encode());
        }
        r
    });
    assert_eq!(d.response.status, 503);
    let record = crate::idempotency::Record::decode(&w.store[&record_key]).unwrap();
    assert_eq!(record.state, crate::idempotency::RecordState::Released);
    w.replies.push_back(reply(PLACED));
    let d = w.send(config(&[]), LIMIT);
    assert_eq!(body(&d)["status"], "placed");
}

#[test]
fn a_swap_reported_won_but_not_written_backs_off() {
    // Spin 4.0.2 on Redis answers an aborted compare-and-swap as a success: the read-back
    // shows the other delivery's claim, and this one answers as its duplicate.
    let d = rival_takes_over(false);
    assert_eq!(body(&d)["outcome"], "in_flight");
}

#[test]
fn a_key_budget_forgets_into_a_filter_and_the_resend_is_looked_up() {
    // A store capped at 64 keys: alerts beyond it push the oldest records out; a resend of
    // a forgotten alert is looked up on Kraken (and found), a new alert is not.
    let cfg = || config(&[("state_max_keys", "64"), ("rate_limit_per_minute", "1000")]);
    let mut w = World::with_replies([]);
    for i in 0..120 {
        // Two alerts a second.
        w.clock += 500_000;
        w.replies.push_back(reply(PLACED));
        let d = w.send(cfg(), &alert_with_id(&format!("a{i:03}")));
        assert_eq!(body(&d)["status"], "placed", "{i}");
    }
    let records = w.store.keys().filter(|k| k.starts_with("dd:")).count();
    assert!(records < 120, "{records} records kept");
    assert!(w.store.keys().any(|k| k.starts_with("fg:")));
    // Pruning runs every eight alerts: the store overshoots its budget by at most their keys.
    assert!(w.store.len() <= 64 + 3 * 8, "{} keys", w.store.len());
    let sent = w.calls.len();
    // The first alert's record is gone: its resend asks Kraken, which has it.
    assert!(!w.store.keys().any(|k| k.ends_with("id:a000")));
    let cl = DedupeKey::new(Some("a000"), b"").cl_ord_id();
    w.replies.push_back(lookup_found("closed", &cl));
    let d = w.send(cfg(), &alert_with_id("a000"));
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(methods(&w)[sent..], ["ClosedOrders"]);
    // A fresh alert is not looked up (it is not in the filter).
    w.replies.push_back(reply(PLACED));
    let d = w.send(cfg(), &alert_with_id("fresh"));
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(methods(&w)[sent + 1..], ["AddOrder"]);
}

#[test]
fn the_comment_is_kept_in_the_audit_event_only() {
    let b = LIMIT.replace(r#""symbol""#, r#""comment":"entry long #7","symbol""#);
    let (d, _) = {
        let mut w = World::with_replies([reply(PLACED)]);
        let d = w.send(config(&[]), &b);
        (d, w)
    };
    assert_eq!(body(&d)["status"], "placed");
    assert!(!String::from_utf8_lossy(&d.response.body).contains("entry long"));
    let line: Value = serde_json::from_str(&d.log[0].text).unwrap();
    assert_eq!(line["comment"], "entry long #7");
}

const NOTIFY_URL: &str = "https://hooks.slack.example/services/T0/B0/notify-token-xyz";

fn notifying(extra: &[(&str, &str)]) -> Config {
    let mut settings = vec![("notify_url", NOTIFY_URL), ("notify_format", "slack")];
    settings.extend_from_slice(extra);
    config(&settings)
}

#[test]
fn each_order_outcome_is_notified_once_after_the_answer() {
    // Placed.
    let mut w = World::with_replies([reply(PLACED)]);
    let d = w.run(handle(notifying(&[]), host(), post(LIMIT, &[])));
    assert_eq!(d.response.status, 200);
    assert_eq!(d.notices.len(), 1);
    let n = &d.notices[0];
    assert_eq!((n.event, n.call.url.as_str()), ("order_placed", NOTIFY_URL));
    let sent: Value = serde_json::from_slice(&n.call.body).unwrap();
    let text = sent["text"].as_str().unwrap();
    assert!(
        text.starts_with("order_placed: buy 1.25 XBTUSD limit @ 37500"),
        "{text}"
    );
    // Refused by Kraken, and pending.
    let mut w = World::with_replies([reply(r#"{"error":["EOrder:Insufficient funds"]}"#)]);
    let d = w.run(handle(notifying(&[]), host(), post(LIMIT, &[])));
    assert_eq!(
        d.notices.iter().map(|n| n.event).collect::<Vec<_>>(),
        ["order_rejected"]
    );
    let mut w = World::with_replies([
        reply(r#"{"error":["EService:Unavailable"]}"#),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    let d = w.run(handle(notifying(&[]), host(), post(LIMIT, &[])));
    assert_eq!(d.response.status, 202);
    assert_eq!(
        d.notices.iter().map(|n| n.event).collect::<Vec<_>>(),
        ["order_pending"]
    );
    // Refused by the bridge: a field error and the kill switch.
    let d = done(handle(
        notifying(&[]),
        host(),
        post(&LIMIT.replace("1.25", "-1"), &[]),
    ));
    assert_eq!(d.response.status, 422);
    assert_eq!(
        d.notices.iter().map(|n| n.event).collect::<Vec<_>>(),
        ["alert_rejected"]
    );
    let d = done(handle(
        notifying(&[("trading_enabled", "false")]),
        host(),
        post(LIMIT, &[]),
    ));
    assert_eq!(d.response.status, 423);
    assert_eq!(
        d.notices.iter().map(|n| n.event).collect::<Vec<_>>(),
        ["trading_disabled"]
    );
    // Even when `log_level` hides the outcome's line.
    let mut w = World::with_replies([reply(PLACED)]);
    let d = w.run(handle(
        notifying(&[("log_level", "error")]),
        host(),
        post(LIMIT, &[]),
    ));
    assert!(d.log.is_empty());
    assert_eq!(d.notices.len(), 1);
}

#[test]
fn nothing_is_notified_without_a_url_or_authentication() {
    let mut w = World::with_replies([reply(PLACED)]);
    let d = w.run(handle(config(&[]), host(), post(LIMIT, &[])));
    assert_eq!(d.response.status, 200);
    assert!(d.notices.is_empty());
    // The notify settings are not read before authentication (FRONT_SETTINGS): an
    // unauthenticated caller can never make the bridge post.
    let lookup = |name: &str| match name {
        "notify_url" => Some(NOTIFY_URL.to_string()),
        "webhook_secret" => Some(WEBHOOK_SECRET.to_string()),
        _ => None,
    };
    // Refusals before authentication that write an event of their own (413 and 415 write
    // `alert_rejected`, an event that is notified once authenticated), on both paths.
    let big = format!(r#"{{"comment":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
    let bad = LIMIT.replace("0123456789abcdef", "0123456789abcdeX");
    let strangers = [
        (post(&bad, &[]), 401),
        (post(&big, &[]), 413),
        (post(LIMIT, &[("content-type", "text/html")]), 415),
    ];
    for (request, status) in strangers {
        let d = done(handle_with(&lookup, host(), request.clone()));
        assert_eq!(d.response.status, status);
        assert!(d.notices.is_empty(), "{status} through the host's lookup");
        let d = done(handle(notifying(&[]), host(), request));
        assert_eq!(d.response.status, status);
        assert!(d.notices.is_empty(), "{status} with every setting parsed");
    }
}

#[test]
fn notify_settings_are_checked_and_the_url_is_a_secret() {
    let problems = |c: Config| c.problems.iter().map(|p| p.setting).collect::<Vec<_>>();
    assert_eq!(
        problems(config(&[("notify_url", "hooks.example/x")])),
        ["notify_url"]
    );
    assert_eq!(
        problems(notifying(&[("notify_format", "teams")])),
        ["notify_format"]
    );
    assert_eq!(
        problems(notifying(&[("notify_format", "telegram")])),
        ["notify_chat_id"]
    );
    assert!(notifying(&[("notify_format", "telegram"), ("notify_chat_id", "42")]).is_usable());
    // A bad notify setting stops alerts, as any unusable setting does.
    let d = done(handle(
        notifying(&[("notify_format", "teams")]),
        host(),
        post(LIMIT, &[]),
    ));
    assert_eq!(d.response.status, 503);
    // `/config` masks the URL; nothing anywhere shows it.
    let d = done(handle(
        notifying(&[("environment", "development")]),
        host(),
        get("/config"),
    ));
    let shown = body(&d);
    assert_eq!(shown["notify_url"], "***");
    assert_eq!(shown["notify_format"], "slack");
    let b = LIMIT.replace(
        r#""price":"37500""#,
        &format!(r#""price":"37500","comment":"{NOTIFY_URL}","volume_x":1"#),
    );
    let d = done(handle(
        notifying(&[("environment", "development")]),
        host(),
        post(&b, &[]),
    ));
    assert_eq!(d.response.status, 422);
    let all = format!(
        "{}{:?}{}",
        String::from_utf8_lossy(&d.response.body),
        d.log,
        d.notices
            .iter()
            .map(|n| String::from_utf8_lossy(&n.call.body).into_owned())
            .collect::<String>()
    );
    assert!(!all.contains("notify-token-xyz"), "{all}");
    assert_eq!(d.notices.len(), 1);
}

// ---- the store as the host runs it: answer first, bounded calls, unsettled claims --------

/// What a driver saw, in order: each store operation, `answer` when the response was
/// released to the client, and each Kraken method.
fn trace(mut step: Step, w: &mut World, at: Now) -> (Done, Vec<String>, Vec<StoreLimit>) {
    let mut seen = Vec::new();
    let mut limits = Vec::new();
    let mut answered: Option<Done> = None;
    loop {
        step = match step {
            Step::Done(d) => {
                if let Some(a) = &answered {
                    assert_eq!(*a, d, "the final Done repeats the answer");
                }
                return (documented(d), seen, limits);
            }
            Step::Answer(d, p) => {
                seen.push("answer".into());
                answered = Some(d);
                p.resume(Input::Answered, at)
            }
            Step::Store(op, p) => {
                limits.push(p.store_limit());
                seen.push(match &op {
                    StoreOp::Get(k) => format!("get {k}"),
                    StoreOp::Set(k, _) => format!("set {k}"),
                    StoreOp::Delete(k) => format!("delete {k}"),
                    StoreOp::Keys => "keys".into(),
                    StoreOp::Increment(k, _) => format!("increment {k}"),
                    StoreOp::Swap { key, .. } => format!("swap {key}"),
                });
                let r = w.store_op(op);
                p.resume(Input::Store(r), at)
            }
            Step::Call(call, p) => {
                let r = match w.market_data(&call) {
                    Some(r) => r,
                    None => {
                        seen.push(call.kraken_method.to_string());
                        let r = w.replies.pop_front().expect("a Kraken answer");
                        w.calls.push(call);
                        r
                    }
                };
                p.resume(Input::Kraken(r), at)
            }
            Step::Wait(_, p) => p.resume(Input::Waited, at),
        };
    }
}

use crate::store::StoreLimit;

/// Mid-slot: one claim counter (the NOW of these tests is on a slot's edge).
const MID_SLOT: Now = Now(NOW.0 + 5_000_000);

#[test]
fn an_accepted_alert_answers_after_six_store_calls_and_writes_its_record_after() {
    let mut w = World::with_replies([reply(PLACED)]);
    let first = Host {
        now: MID_SLOT,
        ..host()
    };
    let (d, seen, _) = trace(
        handle(config(&[]), first, post(LIMIT, &[])),
        &mut w,
        MID_SLOT,
    );
    assert_eq!(body(&d)["status"], "placed");
    let answer = seen.iter().position(|s| s == "answer").expect("answered");
    let before: Vec<&String> = seen[..answer].iter().filter(|s| *s != "AddOrder").collect();
    // Two record buckets, the minute's count, the claim, its counter, the cached pair
    // (a miss: fetched from Kraken, then cached after the answer).
    assert_eq!(before.len(), 6, "{seen:#?}");
    assert!(before[0].starts_with("get dd:") && before[1].starts_with("get dd:"));
    assert!(before[2].starts_with("increment rl:"), "{seen:#?}");
    assert!(before[3].starts_with("set dd:"));
    assert!(before[4].starts_with("increment dc:"));
    assert!(before[5].starts_with("get kraken:pair:"));
    // After the answer: the record (read, written) and the pair cache.
    let after = &seen[answer + 1..];
    assert!(after.iter().any(|s| s.starts_with("set dd:")), "{seen:#?}");
    assert!(
        after.iter().any(|s| s.starts_with("set kraken:pair:")),
        "{seen:#?}"
    );
    // A resend finds the record.
    let resend = Host {
        now: MID_SLOT,
        request_id: "req-2".into(),
        ..host()
    };
    let (d, seen, _) = trace(
        handle(config(&[]), resend, post(LIMIT, &[])),
        &mut w,
        MID_SLOT,
    );
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(body(&d)["outcome"], "placed");
    assert_eq!(seen.len(), 1, "a duplicate reads one key: {seen:#?}");
}

#[test]
fn store_calls_are_bounded_by_the_claim_window_until_owned() {
    let mut w = World::with_replies([reply(PLACED)]);
    let (_, seen, limits) = trace(handle(config(&[]), host(), post(LIMIT, &[])), &mut w, NOW);
    let claim_window_end = NOW.millis() + crate::idempotency::CLAIM_WINDOW_MS;
    let set = seen.iter().position(|s| s.starts_with("set dd:")).unwrap();
    for (i, limit) in limits.iter().enumerate().take(set + 1) {
        assert_eq!(limit.deadline_ms, claim_window_end, "{}", seen[i]);
    }
    // From the claim's own write on, a late write is released by the store component.
    let counted = seen
        .iter()
        .position(|s| s.starts_with("increment dc:"))
        .unwrap();
    for i in [set, counted] {
        let Some(StoreOp::Swap { key, expected, new }) = &limits[i].on_late else {
            panic!("{}: no release when late", seen[i]);
        };
        assert!(seen[set].ends_with(key.as_str()));
        let mine = crate::idempotency::Record::decode(expected).unwrap();
        let released = crate::idempotency::Record::decode(new).unwrap();
        assert_eq!(mine.state, crate::idempotency::RecordState::InFlight);
        assert_eq!(released.state, crate::idempotency::RecordState::Released);
        assert_eq!(mine.owner, "req-1");
    }
    assert!(limits[..set].iter().all(|l| l.on_late.is_none()));
    // Owned: the cached pair is read within a short bound, not the claim window.
    let pair = seen
        .iter()
        .position(|s| s.starts_with("get kraken:pair:"))
        .unwrap();
    assert_eq!(
        limits[pair].deadline_ms,
        NOW.millis() + crate::outcome::STORE_READ_MS
    );
    assert!(limits[pair].on_late.is_none());
    // After the answer, each write is bounded on its own.
    let answer = seen.iter().position(|s| s == "answer").unwrap();
    assert!(limits[answer..].iter().all(|l| l.deadline_ms
        == NOW.millis() + crate::outcome::AFTER_ANSWER_STORE_MS
        && l.on_late.is_none()));
}

/// Drives LIMIT to its end, answering every store operation after the answer with `after`;
/// returns the response and how many operations came after the answer.
fn after_the_answer(after: StoreReply) -> (Done, usize) {
    let mut w = World::with_replies([reply(PLACED)]);
    // A pair fetched from Kraken, so that the writes after the answer include its cache.
    let mut step = handle(config(&[]), host(), post(LIMIT, &[]));
    let mut count = 0;
    let mut answered = false;
    let d = loop {
        step = match step {
            Step::Done(d) => break d,
            Step::Answer(_, p) => {
                answered = true;
                p.resume(Input::Answered, NOW)
            }
            Step::Store(_, p) if answered => {
                count += 1;
                p.resume(Input::Store(after.clone()), NOW)
            }
            Step::Store(op, p) => {
                let r = w.store_op(op);
                p.resume(Input::Store(r), NOW)
            }
            Step::Call(call, p) => {
                let r = w.market_data(&call).unwrap_or_else(|| reply(PLACED));
                p.resume(Input::Kraken(r), NOW)
            }
            Step::Wait(_, p) => p.resume(Input::Waited, NOW),
        };
    };
    (d, count)
}

#[test]
fn a_store_that_does_not_answer_after_the_answer_gets_no_more_writes() {
    let (d, after) = after_the_answer(StoreReply::NoAnswer("no answer within 1000 ms".into()));
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(
        after, 1,
        "one write without an answer ends the writes after the answer"
    );
    // A store that answers with a refusal (a full key cap) still gets the others.
    let (d, after) = after_the_answer(StoreReply::Failed("key limit reached".into()));
    assert_eq!(body(&d)["status"], "placed");
    assert!(after > 1, "{after}");
}

#[test]
fn an_in_flight_record_whose_owner_has_ended_answers_503_until_stale() {
    use crate::idempotency::{Record, IN_FLIGHT_STALE_SECS, REQUEST_ENDED_SECS};
    let key = DedupeKey::new(None, LIMIT.as_bytes());
    let record_key = key.store_keys(NOW.secs(), 60)[0].clone();
    // A claim that landed after its owner gave up (or whose owner died): in flight, from
    // NOW, never settled.
    let orphan = Record::in_flight(NOW.secs(), &key.cl_ord_id(), "gone", NOW.secs());
    let at = |secs: u64| Host {
        now: Now(NOW.0 + secs * 1_000_000),
        request_id: format!("resend-{secs}"),
        ..host()
    };
    // While its owner's request may still run: a simultaneous delivery, a duplicate.
    let mut w = World::with_replies([]);
    w.store.insert(record_key.clone(), orphan.encode());
    let run = |w: &mut World, secs: u64| {
        let host = at(secs);
        let now = host.now;
        trace(handle(config(&[]), host, post(LIMIT, &[])), w, now).0
    };
    let d = run(&mut w, REQUEST_ENDED_SECS);
    assert_eq!(body(&d)["status"], "duplicate");
    // Once that request has certainly ended: 503 with retry-after, nothing sent, the
    // record untouched.
    for secs in REQUEST_ENDED_SECS + 1..=IN_FLIGHT_STALE_SECS {
        let d = run(&mut w, secs);
        assert_eq!(d.response.status, 503, "{secs} s");
        let retry: u64 = d.response.header("retry-after").unwrap().parse().unwrap();
        assert_eq!(retry, IN_FLIGHT_STALE_SECS + 1 - secs, "{secs} s");
        assert_eq!(w.store[&record_key], orphan.encode());
    }
    assert!(w.calls.is_empty());
    // Stale: taken over, looked up first, and traded once.
    let mut w = World::with_replies([reply(NONE_CLOSED), reply(PLACED)]);
    w.store.insert(record_key.clone(), orphan.encode());
    let d = run(&mut w, IN_FLIGHT_STALE_SECS + 1);
    assert_eq!(body(&d)["status"], "placed");
    assert_eq!(methods(&w), ["ClosedOrders", "AddOrder"]);
}

#[test]
fn health_reports_a_store_that_does_not_answer() {
    fn down() -> Result<(&'static str, Option<Vec<u8>>), String> {
        Err("no answer within 1000 ms".into())
    }
    fn up() -> Result<(&'static str, Option<Vec<u8>>), String> {
        Ok(("bounded", None))
    }
    let with = |probe: StoreProbe| Host {
        store_probe: Some(probe),
        ..host()
    };
    let d = documented(match handle(config(&[]), with(down), get("/health")) {
        Step::Done(d) => d,
        other => panic!("{other:?}"),
    });
    assert_eq!(d.response.status, 503);
    assert_eq!(body(&d)["status"], "store_unavailable");
    assert_eq!(body(&d)["store"]["status"], "unavailable");
    assert_eq!(body(&d)["store"]["reason"], "no answer within 1000 ms");
    let d = documented(match handle(config(&[]), with(up), get("/health")) {
        Step::Done(d) => d,
        other => panic!("{other:?}"),
    });
    assert_eq!(d.response.status, 200);
    assert_eq!(body(&d)["status"], "ok");
    assert_eq!(body(&d)["store"]["calls"], "bounded");
    // A liveness probe may leave the store out.
    let d = documented(
        match handle(config(&[]), with(down), get("/health?store=skip")) {
            Step::Done(d) => d,
            other => panic!("{other:?}"),
        },
    );
    assert_eq!(d.response.status, 200);
    assert!(body(&d).get("store").is_none());
    // A configuration problem is still named first.
    let broken = config(&[("rate_limit_per_minute", "lots")]);
    let d = documented(match handle(broken, with(down), get("/health")) {
        Step::Done(d) => d,
        other => panic!("{other:?}"),
    });
    assert_eq!(d.response.status, 503);
    assert_eq!(body(&d)["status"], "misconfigured");
}

#[test]
fn a_store_that_refuses_the_claim_is_pruned_after_the_answer() {
    // A full key cap refuses every new key, the minute's count among them: the alert
    // answers 503 and prunes, or a full store would never make room again.
    let mut w = World::with_replies([]);
    let mut pruned = false;
    let d = w.drive_limit(|w, op| match op {
        StoreOp::Keys => {
            pruned = true;
            w.store_op(op)
        }
        StoreOp::Increment(k, _) if k.starts_with("rl:") => {
            StoreReply::Failed("key limit reached".into())
        }
        op => w.store_op(op),
    });
    assert_eq!(d.response.status, 503);
    assert!(pruned, "the refused alert pruned the store");
    assert!(methods(&w).is_empty());
}

// ---- accounts (contract 2.7) -----------------------------------------------------------

const SWING_SECRET: &str = "swing-webhook-secret-0123456789abcd";
const SCALP_SECRET: &str = "scalp-webhook-secret-0123456789abcd";
const PAPER_SECRET: &str = "paper-webhook-secret-0123456789abcd";
const SWING_KEY: &str = "swing-api-key-public";
const SWING_API_SECRET: &str = "c3dpbmctc2VjcmV0LWJ5dGVzLTAxMjM0NTY3ODk=";

/// Three accounts: `swing` with its own key and a cap, `scalp` switched off, `paper` a dry run
/// on the top level's keys.
fn accounts() -> String {
    format!(
        r#"{{"swing":{{"webhook_secret":"{SWING_SECRET}","kraken_api_key":"{SWING_KEY}","kraken_api_secret":"{SWING_API_SECRET}","max_order_value":"50000"}},
            "scalp":{{"webhook_secret":"{SCALP_SECRET}","trading_enabled":false}},
            "paper":{{"webhook_secret":"{PAPER_SECRET}","dry_run":true}}}}"#
    )
}

fn with_accounts(extra: &[(&str, &str)]) -> Config {
    let accounts = accounts();
    let mut all = vec![("kraken_accounts", accounts.as_str())];
    all.extend_from_slice(extra);
    config(&all)
}

/// LIMIT with `secret` as its body secret (and `id` when given), posted to `path`.
fn alert_to(path: &str, secret: &str, id: Option<&str>, headers: &[(&str, &str)]) -> Request {
    let mut body = LIMIT.replace(WEBHOOK_SECRET, secret);
    if let Some(id) = id {
        body = body.replace(r#""symbol""#, &format!(r#""id":"{id}","symbol""#));
    }
    Request {
        path: path.into(),
        ..post(&body, headers)
    }
}

fn header_of<'a>(call: &'a Call, name: &str) -> &'a str {
    &call.headers.iter().find(|(k, _)| k == name).unwrap().1
}

fn line(d: &Done, i: usize) -> Value {
    serde_json::from_str(&d.log[i].text).unwrap()
}

#[test]
fn the_accounts_parse_and_each_lays_its_settings_over_the_top_level() {
    let c = with_accounts(&[]);
    assert!(c.is_usable(), "{:?}", c.problems);
    let swing = c.for_account("swing").unwrap();
    assert_eq!(swing.account.as_deref(), Some("swing"));
    assert_eq!(swing.kraken_key_count(), 1);
    assert_eq!(
        swing.max_order_value,
        Some(rust_decimal::Decimal::from(50_000))
    );
    assert!(swing.trading_enabled && !swing.dry_run);
    let scalp = c.for_account("scalp").unwrap();
    assert!(!scalp.trading_enabled);
    // No key of its own: the top level's, its otp and url with it.
    assert_eq!(
        scalp
            .kraken_key(0)
            .map(|(k, _)| k.expose_for(Use::KrakenCredential)),
        Some(API_KEY.as_bytes())
    );
    assert_eq!(scalp.kraken_api_url, "http://127.0.0.1:18081");
    assert!(c.for_account("paper").unwrap().dry_run);
    assert!(c.for_account("nosuch").is_none());
    // Every secret of the bridge is redacted from an account's answers.
    let redacted: Vec<_> = swing
        .secrets()
        .map(|s| s.expose_for(Use::Redaction).to_vec())
        .collect();
    for s in [
        WEBHOOK_SECRET,
        SCALP_SECRET,
        PAPER_SECRET,
        API_SECRET,
        SWING_API_SECRET,
    ] {
        assert!(redacted.contains(&s.as_bytes().to_vec()), "{s}");
    }
}

#[test]
fn an_unknown_account_or_another_accounts_secret_is_answered_exactly_as_a_wrong_secret() {
    for env in ["production", "development"] {
        let c = with_accounts(&[("environment", env)]);
        let answer = |r: Request| {
            let d = done(handle(c.clone(), host(), r));
            let all = format!("{:?}{}", d.log, String::from_utf8_lossy(&d.response.body));
            for s in [
                WEBHOOK_SECRET,
                SWING_SECRET,
                SCALP_SECRET,
                PAPER_SECRET,
                UNKNOWN_ACCOUNT_STAND_IN,
            ] {
                assert!(!all.contains(s), "{all}");
            }
            assert_eq!(events(&d), ["auth_failed"]);
            (d.response.clone(), line(&d, 0))
        };
        let (wrong, _) = answer(alert_to(
            "/webhook",
            "not-the-secret-0123456789abcdefgh",
            None,
            &[],
        ));
        assert_eq!(wrong.status, 401);
        for (path, secret) in [
            ("/webhook/scalp", SWING_SECRET),
            ("/webhook", SWING_SECRET),
            ("/webhook/swing", WEBHOOK_SECRET),
            ("/webhook/nosuch", SWING_SECRET),
            ("/webhook/nosuch", WEBHOOK_SECRET),
            ("/webhook/nosuch", UNKNOWN_ACCOUNT_STAND_IN),
            ("/webhook/Not%20a%20name", SWING_SECRET),
        ] {
            let (response, audit) = answer(alert_to(path, secret, None, &[]));
            assert_eq!(response, wrong, "{env} {path}");
            assert_eq!(audit["reason"], "wrong_secret", "{path}");
        }
        // Signed with an account's secret, sent to another account or to none.
        let body = LIMIT.replace(WEBHOOK_SECRET, "x");
        let sign = |key: &str| {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(body.as_bytes());
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let signed = |path: &str, key: &str| {
            let sig = sign(key);
            answer(Request {
                path: path.into(),
                ..post(&body, &[("x-signature", sig.as_str())])
            })
        };
        let (bad_signature, _) = signed("/webhook", "not-the-secret-0123456789abcdefgh");
        for (path, key) in [
            ("/webhook/scalp", SWING_SECRET),
            ("/webhook", SWING_SECRET),
            ("/webhook/swing", WEBHOOK_SECRET),
            ("/webhook/nosuch", SWING_SECRET),
            ("/webhook/nosuch", UNKNOWN_ACCOUNT_STAND_IN),
        ] {
            let (response, audit) = signed(path, key);
            assert_eq!(response, bad_signature, "{env} {path}");
            assert_eq!(audit["reason"], "bad_signature");
        }
        // The operator's line says which account was addressed and whether it exists.
        let (_, audit) = answer(alert_to("/webhook/nosuch", SWING_SECRET, None, &[]));
        assert_eq!(
            (&audit["account"], &audit["account_known"]),
            (&json!("nosuch"), &json!(false))
        );
        let (_, audit) = answer(alert_to("/webhook/scalp", SWING_SECRET, None, &[]));
        assert_eq!(
            (&audit["account"], &audit["account_known"]),
            (&json!("scalp"), &json!(true))
        );
        let (_, audit) = answer(alert_to("/webhook/Not%20a%20name", SWING_SECRET, None, &[]));
        assert_eq!(
            (&audit["account"], &audit["account_known"]),
            (&Value::Null, &json!(false))
        );
        let (_, audit) = answer(alert_to("/webhook", SWING_SECRET, None, &[]));
        assert_eq!(audit.get("account"), None);
    }
}

#[test]
fn an_account_trades_with_its_own_key_and_its_own_cl_ord_ids_and_names_itself() {
    let c = with_accounts(&[]);
    let mut w = World::default();
    let (call, pending) = w
        .until_call(handle(
            c.clone(),
            host(),
            alert_to("/webhook/swing", SWING_SECRET, Some("a000"), &[]),
        ))
        .ok()
        .unwrap();
    assert_eq!(header_of(&call, "api-key"), SWING_KEY);
    assert_eq!(
        header_of(&call, "api-sign"),
        api_sign(
            SWING_API_SECRET.as_bytes(),
            "/0/private/AddOrder",
            NOW.0,
            &call.body
        )
        .unwrap()
    );
    let swing_cl = DedupeKey::new(Some("a000"), b"")
        .in_account(Some("swing"))
        .cl_ord_id();
    let default_cl = DedupeKey::new(Some("a000"), b"").cl_ord_id();
    assert_ne!(swing_cl, default_cl);
    assert!(String::from_utf8_lossy(&call.body).contains(&format!("cl_ord_id={swing_cl}")));
    // Its records, claims and rate count are its own.
    let keys: Vec<String> = w
        .ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Get(k) | StoreOp::Set(k, _) | StoreOp::Increment(k, _) => Some(k.clone()),
            _ => None,
        })
        .collect();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("dd:") && k.ends_with("@swing:id:a000")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("dc:") && k.ends_with("@swing:id:a000")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("rl:") && k.ends_with("@swing")),
        "{keys:?}"
    );
    assert!(
        !keys
            .iter()
            .any(|k| k.ends_with(":id:a000") && !k.contains("@swing")),
        "{keys:?}"
    );
    let placed = r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"},"txid":["OAAAAA-BBBBB-CCCCCC"]}}"#;
    let notify = [("notify_url", "https://hooks.example.test/notify-0123456789")];
    let d = w.run(pending.resume(Input::Kraken(reply(placed)), NOW));
    assert_eq!(d.response.status, 200);
    assert_eq!(body(&d)["cl_ord_id"], swing_cl.as_str());
    assert_eq!(events(&d), ["order_placed"]);
    assert_eq!(line(&d, 0)["account"], "swing");

    // The same `id` to the default account, in the same store: a new alert, the top
    // level's key, the default cl_ord_id, no account in its lines.
    let (call, pending) = w
        .until_call(handle(
            c.clone(),
            host(),
            alert_to("/webhook", WEBHOOK_SECRET, Some("a000"), &[]),
        ))
        .ok()
        .unwrap();
    assert_eq!(header_of(&call, "api-key"), API_KEY);
    assert!(String::from_utf8_lossy(&call.body).contains(&format!("cl_ord_id={default_cl}")));
    let d = w.run(pending.resume(Input::Kraken(reply(placed)), NOW));
    assert_eq!(d.response.status, 200);
    assert_eq!(line(&d, 0).get("account"), None);

    // Resent to swing: its duplicate, nothing sent.
    let d = w.run(handle(
        c.clone(),
        host(),
        alert_to("/webhook/swing", SWING_SECRET, Some("a000"), &[]),
    ));
    assert_eq!(body(&d)["status"], "duplicate", "{:?}", body(&d));
    assert_eq!(line(&d, 0)["account"], "swing");

    // Its notifications name it too.
    let c = with_accounts(&notify);
    let mut w = World::default();
    let (_, pending) = w
        .until_call(handle(
            c,
            host(),
            alert_to("/webhook/paper", PAPER_SECRET, Some("n1"), &[]),
        ))
        .ok()
        .unwrap();
    let d = w.run(pending.resume(Input::Kraken(reply(placed)), NOW));
    let notice: Value = serde_json::from_slice(&d.notices[0].call.body).unwrap();
    assert_eq!(notice["account"], "paper");
    // And the warning of a notification that could not be delivered.
    let failed = crate::notify::delivery_line(&d.notices[0], &Transport::Lost("x".into()), NOW)
        .expect("a warning");
    crate::audit::documented::check(&failed.text);
    let failed: Value = serde_json::from_str(&failed.text).unwrap();
    assert_eq!(
        (&failed["event"], &failed["account"]),
        (&json!("notify_failed"), &json!("paper"))
    );
}

#[test]
fn an_account_switched_off_or_in_dry_run_while_the_default_account_trades() {
    let c = with_accounts(&[]);
    let d = done(handle(
        c.clone(),
        host(),
        alert_to("/webhook/scalp", SCALP_SECRET, None, &[]),
    ));
    assert_eq!(d.response.status, 423);
    assert_eq!(events(&d), ["trading_disabled"]);
    assert_eq!(line(&d, 0)["account"], "scalp");
    let (call, _) = sends(handle(
        c.clone(),
        host(),
        alert_to("/webhook/paper", PAPER_SECRET, None, &[]),
    ));
    assert!(String::from_utf8_lossy(&call.body).contains("validate=true"));
    let (call, _) = sends(handle(
        c.clone(),
        host(),
        alert_to("/webhook", WEBHOOK_SECRET, None, &[]),
    ));
    assert!(!String::from_utf8_lossy(&call.body).contains("validate"));
    // swing's cap: 1.25 at 37,500 is 46,875, under its 50,000; 1.5 is over it. The top level
    // has no cap.
    let big = |path: &str, secret: &str| {
        let mut r = alert_to(path, secret, None, &[]);
        r.body = String::from_utf8(r.body)
            .unwrap()
            .replace("1.25", "1.5")
            .into_bytes();
        r
    };
    assert!(is_call(handle(
        c.clone(),
        host(),
        alert_to("/webhook/swing", SWING_SECRET, None, &[])
    )));
    let d = done(handle(
        c.clone(),
        host(),
        big("/webhook/swing", SWING_SECRET),
    ));
    assert_eq!(d.response.status, 422, "{:?}", body(&d));
    assert!(is_call(handle(
        c.clone(),
        host(),
        big("/webhook", WEBHOOK_SECRET)
    )));
    // The kill switch at the top level holds for an account that does not override it...
    let off = with_accounts(&[("trading_enabled", "false")]);
    let d = done(handle(
        off.clone(),
        host(),
        alert_to("/webhook/paper", PAPER_SECRET, None, &[]),
    ));
    assert_eq!(d.response.status, 423);
}

#[test]
fn each_account_has_its_own_rate_limit() {
    let accounts =
        format!(r#"{{"swing":{{"webhook_secret":"{SWING_SECRET}","rate_limit_per_minute":"1"}}}}"#);
    let c = config(&[
        ("kraken_accounts", &accounts),
        ("rate_limit_per_minute", "2"),
    ]);
    let mut w = World::with_replies([]);
    let placed =
        || reply(r#"{"error":[],"result":{"descr":{"order":"x"},"txid":["OAAAAA-BBBBB-CCCCCC"]}}"#);
    let send = |w: &mut World, path: &str, secret: &str, id: &str| {
        w.replies.push_back(placed());
        let d = w.run(handle(
            c.clone(),
            host(),
            alert_to(path, secret, Some(id), &[]),
        ));
        w.replies.clear();
        d.response.status
    };
    assert_eq!(send(&mut w, "/webhook/swing", SWING_SECRET, "s1"), 200);
    assert_eq!(send(&mut w, "/webhook/swing", SWING_SECRET, "s2"), 429);
    // The default account counts its own minute: two.
    assert_eq!(send(&mut w, "/webhook", WEBHOOK_SECRET, "d1"), 200);
    assert_eq!(send(&mut w, "/webhook", WEBHOOK_SECRET, "d2"), 200);
    assert_eq!(send(&mut w, "/webhook", WEBHOOK_SECRET, "d3"), 429);
}

#[test]
fn health_and_config_show_each_account_by_name_and_key_count_never_a_secret() {
    let c = with_accounts(&[("environment", "development")]);
    let h = done(handle(c.clone(), host(), get("/health")));
    assert_eq!(h.response.status, 200);
    let accounts = &body(&h)["accounts"];
    assert_eq!(
        accounts,
        &json!([
            {"name":"swing","usable":true,"kraken_keys":1,"trading_enabled":true,"dry_run":false},
            {"name":"scalp","usable":true,"kraken_keys":1,"trading_enabled":false,"dry_run":false},
            {"name":"paper","usable":true,"kraken_keys":1,"trading_enabled":true,"dry_run":true},
        ])
    );
    let cfg = done(handle(c, host(), get("/config")));
    let b = body(&cfg);
    assert_eq!(b["kraken_accounts"], "***");
    assert_eq!(b["accounts"][0]["name"], "swing");
    assert_eq!(b["accounts"][0]["webhook_secret"], "***");
    assert_eq!(b["accounts"][0]["webhook_secret_previous"], Value::Null);
    assert_eq!(b["accounts"][0]["max_order_value"], "50000");
    assert_eq!(b["accounts"][1]["trading_enabled"], false);
    assert_eq!(b["accounts"][0]["position_reserve"], json!([]));
    for text in [&h.response.body, &cfg.response.body] {
        let text = String::from_utf8_lossy(text);
        for s in [
            WEBHOOK_SECRET,
            SWING_SECRET,
            SCALP_SECRET,
            PAPER_SECRET,
            SWING_KEY,
            SWING_API_SECRET,
        ] {
            assert!(!text.contains(s), "{text}");
        }
    }
}

#[test]
fn a_malformed_kraken_accounts_stops_every_alert_and_health_says_why_without_a_secret() {
    let long = "a-good-long-webhook-secret-0123456789";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}""#),
            "not a JSON object",
        ),
        (format!(r#"["{long}"]"#), "not a JSON object"),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","notify_url":"https://x"}}}}"#),
            "notify_url is a top-level setting only",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","{long}":"x"}}}}"#),
            "member 2 is not a setting",
        ),
        (
            r#"{"swing":{"webhook_secret":"short-secret-xyz"}}"#.into(),
            "shorter than 32 bytes",
        ),
        (r#"{"swing":{"trading_enabled":false}}"#.into(), "required"),
        (
            format!(
                r#"{{"swing":{{"webhook_secret":"{long}"}},"swing":{{"webhook_secret":"{long}x"}}}}"#
            ),
            "named twice",
        ),
        (
            format!(r#"{{"Swing":{{"webhook_secret":"{long}"}}}}"#),
            "a name is 1 to 32",
        ),
        (
            format!(r#"{{"{long}":{{"webhook_secret":"{long}"}}}}"#),
            "a name is 1 to 32",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{WEBHOOK_SECRET}"}}}}"#),
            "the same as a webhook secret of the default account",
        ),
        (
            format!(
                r#"{{"a":{{"webhook_secret":"{long}"}},"b":{{"webhook_secret_previous":"{long}","webhook_secret":"{long}-b"}}}}"#
            ),
            "the same as a webhook secret of account a",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","kraken_api_key":"short-key"}}}}"#),
            "shorter than 12 bytes",
        ),
        (
            format!(
                r#"{{"swing":{{"webhook_secret":"{long}","kraken_api_key":"swing-api-key-public"}}}}"#
            ),
            "required to trade",
        ),
        (
            format!(
                r#"{{"swing":{{"webhook_secret":"{long}","kraken_api_key":"swing-api-key-public","kraken_api_secret":"not base64 {long}"}}}}"#
            ),
            "not valid base64",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","kraken_otp":"1234"}}}}"#),
            "shorter than 12 bytes",
        ),
        (
            format!(
                r#"{{"swing":{{"webhook_secret":"{long}","kraken_api_keys":[{{"api_key":"{long}"}}]}}}}"#
            ),
            "not a JSON list",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","max_order_value":"-5"}}}}"#),
            "max_order_value",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","rate_limit_per_minute":0}}}}"#),
            "from 1 to 100000",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","dry_run":"maybe"}}}}"#),
            "`true` or `false`",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","position_negative":"short"}}}}"#),
            "`refuse` or `flat`",
        ),
        (
            format!(r#"{{"swing":{{"webhook_secret":"{long}","max_position_value":"0"}}}}"#),
            "max_position_value",
        ),
        ("{}".into(), "names no account"),
    ];
    for (accounts, says) in &cases {
        let c = config(&[("kraken_accounts", accounts.as_str())]);
        assert!(!c.is_usable(), "{accounts}");
        let h = done(handle(c.clone(), host(), get("/health")));
        assert_eq!(h.response.status, 503, "{accounts}");
        let text = String::from_utf8_lossy(&h.response.body).into_owned();
        assert!(text.contains(says), "{accounts}: {text}");
        for s in [
            long,
            WEBHOOK_SECRET,
            "short-secret-xyz",
            "short-key",
            "1234\"",
        ] {
            assert!(!text.contains(s), "{accounts}: {text}");
        }
        // No alert trades on a guess: neither the default account's nor an account's.
        for (path, secret) in [("/webhook", WEBHOOK_SECRET), ("/webhook/swing", long)] {
            let d = done(handle(c.clone(), host(), alert_to(path, secret, None, &[])));
            assert_eq!(d.response.status, 503, "{accounts} {path}");
            assert_eq!(events(&d), ["config_error"]);
        }
    }
    // An account whose own setting breaks a rule: its /health entry says it is not usable
    // and why, naming the setting and never the value; a sound account beside it is not
    // usable either (no alert trades on a guess), with no problem of its own.
    let accounts = format!(
        r#"{{"good":{{"webhook_secret":"{long}"}},"bad":{{"webhook_secret":"{long}-bad","kraken_otp":"1234"}}}}"#
    );
    let h = done(handle(
        config(&[("kraken_accounts", accounts.as_str())]),
        host(),
        get("/health"),
    ));
    let b = body(&h);
    assert_eq!(h.response.status, 503);
    let entry = |name: &str| {
        b["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(entry("bad")["usable"], false, "{b}");
    // (An otp makes the keys the account's own, so its key and secret are missing too.)
    let problems = entry("bad")["problems"].as_array().cloned().unwrap();
    assert!(problems.iter().any(|p| p["setting"] == "kraken_otp"), "{b}");
    assert!(problems.iter().all(|p| p["account"] == "bad"), "{b}");
    assert_eq!(entry("good")["usable"], false, "{b}");
    assert!(entry("good").get("problems").is_none(), "{b}");
    assert!(!b.to_string().contains("1234"), "{b}");

    // The same, read lazily as the host does: the account path reads kraken_accounts before
    // authenticating, and stops there.
    let accounts = format!(r#"{{"swing":{{"webhook_secret":"{long}","dry_run":"maybe"}}}}"#);
    let lookup = |name: &str| match name {
        "webhook_secret" => Some(WEBHOOK_SECRET.to_string()),
        "kraken_api_key" => Some(API_KEY.to_string()),
        "kraken_api_secret" => Some(API_SECRET.to_string()),
        "kraken_accounts" => Some(accounts.clone()),
        _ => None,
    };
    for (path, secret) in [("/webhook", WEBHOOK_SECRET), ("/webhook/swing", long)] {
        let d = done(handle_with(
            &lookup,
            host(),
            alert_to(path, secret, None, &[]),
        ));
        assert_eq!(d.response.status, 503, "{path}");
    }
}

#[test]
fn an_accounts_alert_read_lazily_as_the_host_reads_settings_trades() {
    let accounts = accounts();
    let read = std::cell::RefCell::new(Vec::new());
    let lookup = |name: &str| {
        read.borrow_mut().push(name.to_string());
        match name {
            "webhook_secret" => Some(WEBHOOK_SECRET.to_string()),
            "kraken_api_key" => Some(API_KEY.to_string()),
            "kraken_api_secret" => Some(API_SECRET.to_string()),
            "kraken_api_url" => Some("http://127.0.0.1:18081".to_string()),
            "kraken_accounts" => Some(accounts.clone()),
            _ => None,
        }
    };
    let (call, _) = sends(handle_with(
        &lookup,
        host(),
        alert_to("/webhook/swing", SWING_SECRET, None, &[]),
    ));
    assert_eq!(header_of(&call, "api-key"), SWING_KEY);
    // A refused alert to the default account does not read kraken_accounts.
    read.borrow_mut().clear();
    let d = done(handle_with(
        &lookup,
        host(),
        alert_to("/webhook", SWING_SECRET, None, &[]),
    ));
    assert_eq!(d.response.status, 401);
    assert!(
        !read.borrow().iter().any(|n| n == "kraken_accounts"),
        "{:?}",
        read.borrow()
    );
    // Each name once per request, however many accounts.
    read.borrow_mut().clear();
    let (call, _) = sends(handle_with(
        &lookup,
        host(),
        alert_to("/webhook/paper", PAPER_SECRET, None, &[]),
    ));
    assert_eq!(header_of(&call, "api-key"), API_KEY);
    let names = read.borrow();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[test]
fn another_accounts_secret_in_an_alert_never_leaves() {
    let c = with_accounts(&[("environment", "development")]);
    for (path, secret, pasted) in [
        ("/webhook", WEBHOOK_SECRET, SWING_SECRET),
        ("/webhook/swing", SWING_SECRET, WEBHOOK_SECRET),
        ("/webhook/paper", PAPER_SECRET, SWING_API_SECRET),
    ] {
        let mut r = alert_to(path, secret, None, &[]);
        r.body = String::from_utf8(r.body)
            .unwrap()
            .replace(
                r#""price":"37500""#,
                &format!(r#""price":"37500","comment":"{pasted}","bogus_{pasted}":1"#),
            )
            .into_bytes();
        let d = done(handle(c.clone(), host(), r));
        assert_eq!(d.response.status, 422);
        let all = format!("{}{:?}", String::from_utf8_lossy(&d.response.body), d.log);
        assert!(!all.contains(pasted), "{all}");
    }
}

thread_local! {
    /// What the store probe of [`a_refused_key_is_reported_by_health_on_every_instance`]
    /// finds under the refused keys' record.
    static REFUSED_RECORD: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn a_refused_key_is_reported_by_health_on_every_instance() {
    let accounts = format!(
        r#"{{"swing":{{"webhook_secret":"{SWING_SECRET}","kraken_api_key":"{SWING_KEY}","kraken_api_secret":"{SWING_API_SECRET}","kraken_api_keys":{MORE_KEYS}}}}}"#
    );
    let cfg = config(&[
        ("kraken_api_keys", MORE_KEYS),
        ("kraken_accounts", &accounts),
    ]);
    assert!(cfg.is_usable(), "{:?}", cfg.problems);
    let refused = reply(r#"{"error":["EAPI:Invalid key"]}"#);
    let placed =
        reply(r#"{"error":[],"result":{"descr":{"order":"x"},"txid":["OAAAAA-BBBBB-CCCCCC"]}}"#);
    // One alert to the default account and one to swing, each refused on its first key.
    let mut w = World::default();
    let mut first_signers = Vec::new();
    for (path, secret) in [
        ("/webhook", WEBHOOK_SECRET),
        ("/webhook/swing", SWING_SECRET),
    ] {
        let (call, pending) = w
            .until_call(handle(
                cfg.clone(),
                host(),
                alert_to(path, secret, Some("kr-1"), &[]),
            ))
            .ok()
            .unwrap();
        let pool = if path == "/webhook" {
            [API_KEY, "second-api-key-public", "third-api-key-public"]
        } else {
            [SWING_KEY, "second-api-key-public", "third-api-key-public"]
        };
        let signer = pool
            .iter()
            .position(|k| *k == header_of(&call, "api-key"))
            .unwrap()
            + 1;
        first_signers.push(signer);
        w.replies.push_back(placed.clone());
        let d = w.run(pending.resume(Input::Kraken(refused.clone()), NOW));
        assert_eq!(d.response.status, 200, "{:?}", body(&d));
        assert_eq!(line(&d, 0)["signers_refused"], json!([signer]));
    }
    // After their answers, both refusals are in the store's record.
    let record = w
        .store
        .get(crate::refused_keys::KEY)
        .cloned()
        .expect("recorded");
    let entries = crate::refused_keys::decode(Some(&record));
    assert_eq!(entries.len(), 2, "{entries:?}");
    // /health, on any instance: its store probe reads the record.
    fn probe() -> Result<(&'static str, Option<Vec<u8>>), String> {
        Ok(("bounded", REFUSED_RECORD.with(|r| r.borrow().clone())))
    }
    REFUSED_RECORD.with(|r| *r.borrow_mut() = Some(record));
    let h = done(handle(
        cfg.clone(),
        Host {
            store_probe: Some(probe),
            ..host()
        },
        get("/health"),
    ));
    assert_eq!(h.response.status, 200);
    let b = body(&h);
    let at = NOW.rfc3339();
    assert_eq!(
        b["kraken_keys_refused"],
        json!([{"key": first_signers[0], "at": at}]),
        "{b}"
    );
    assert_eq!(
        b["accounts"][0]["kraken_keys_refused"],
        json!([{"key": first_signers[1], "at": at}]),
        "{b}"
    );
    // A day later, nothing.
    let later = Host {
        store_probe: Some(probe),
        now: Now(NOW.0 + crate::refused_keys::KEEP_SECS * 1_000_000),
        ..host()
    };
    let b = body(&done(handle(cfg, later, get("/health"))));
    assert!(b.get("kraken_keys_refused").is_none(), "{b}");
    assert!(b["accounts"][0].get("kraken_keys_refused").is_none(), "{b}");
}

/// Position alerts through the machine: the turn, the plan, the outcomes (contract 2.6).
mod position;
