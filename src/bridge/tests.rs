//! Whole-path scenarios of the core with a fixed clock and canned Kraken answers.

use super::*;
use crate::kraken::sign::api_sign;
use crate::secret::Use;

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

fn done(step: Step) -> Done {
    match step {
        Step::Done(d) => d,
        Step::Send(call, _) => panic!("expected a response, got a call to {}", call.url),
    }
}

/// The Kraken call a step asks for, or a panic showing the response instead.
fn sends(step: Step) -> (Call, Box<Pending>) {
    match step {
        Step::Send(call, pending) => (call, pending),
        Step::Done(d) => panic!(
            "expected a Kraken call, got {} {}",
            d.response.status,
            String::from_utf8_lossy(&d.response.body)
        ),
    }
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
            "nonce={}&pair=XBTUSD&type=buy&ordertype=limit&volume=1.25&price=37500&cl_ord_id={cl}",
            NOW.0
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

    let d = done(pending.resume(
        reply(r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"},"txid":["OAAAAA-BBBBB-CCCCCC"]}}"#),
        NOW,
    ));
    assert_eq!(d.response.status, 200);
    assert_eq!(
        body(&d),
        json!({"status":"placed","txid":["OAAAAA-BBBBB-CCCCCC"],"description":"buy 1.25000000 XBTUSD @ limit 37500.0","cl_ord_id":cl})
    );
    assert_eq!(events(&d), ["order_placed"]);
    assert!(!d.log[0].text.contains(WEBHOOK_SECRET));
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
            assert!(matches!(step, Step::Send(..)), "{key} {sig}");
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
    assert!(matches!(step, Step::Send(..)));
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
        assert!(matches!(step, Step::Send(..)), "{ct}");
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
    let health = done(handle(
        cfg,
        host(),
        Request {
            method: "GET".into(),
            path: "/health".into(),
            headers: vec![],
            body: vec![],
        },
    ));
    assert_eq!(health.response.status, 503);
    let h = body(&health);
    assert_eq!(h["status"], "misconfigured");
    assert_eq!(h["problems"][0]["setting"], "webhook_secret");
    assert!(!String::from_utf8_lossy(&health.response.body).contains("31"));
}

#[test]
fn health_and_config_endpoints() {
    let get = |path: &str, cfg: Config| {
        done(handle(
            cfg,
            host(),
            Request {
                method: "GET".into(),
                path: path.into(),
                headers: vec![],
                body: vec![],
            },
        ))
    };
    let h = get("/health", config(&[]));
    assert_eq!(h.response.status, 200);
    let hb = body(&h);
    assert_eq!(hb["status"], "ok");
    assert_eq!(hb["trading_enabled"], true);
    assert_eq!(hb["dry_run"], false);
    assert_eq!(hb["state_store"], "default");
    assert_eq!(hb["version"], env!("CARGO_PKG_VERSION"));

    assert_eq!(get("/config", config(&[])).response.status, 404);
    let c = get(
        "/config",
        config(&[("environment", "development"), ("kraken_otp", "999999")]),
    );
    assert_eq!(c.response.status, 200);
    let cb = body(&c);
    assert_eq!(cb["webhook_secret"], "***");
    assert_eq!(cb["kraken_api_secret"], "***");
    assert_eq!(cb["kraken_otp"], "***");
    assert_eq!(cb["webhook_secret_previous"], Value::Null);
    assert_eq!(cb["kraken_api_url"], "http://127.0.0.1:18081");
    let text = String::from_utf8_lossy(&c.response.body);
    for s in [WEBHOOK_SECRET, API_KEY, API_SECRET, "999999"] {
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

    let Step::Send(call, pending) =
        handle(config(&[("dry_run", "true")]), host(), post(LIMIT, &[]))
    else {
        panic!("dry run still asks Kraken to validate");
    };
    assert!(String::from_utf8_lossy(&call.body).ends_with("&validate=true"));
    let d = done(pending.resume(
        reply(
            r#"{"error":[],"result":{"descr":{"order":"buy 1.25000000 XBTUSD @ limit 37500.0"}}}"#,
        ),
        NOW,
    ));
    assert_eq!(
        body(&d),
        json!({"status":"validated","description":"buy 1.25000000 XBTUSD @ limit 37500.0"})
    );
    assert_eq!(events(&d), ["order_validated"]);
}

#[test]
fn kraken_outcomes() {
    let run = |t: Transport| {
        let Step::Send(_, pending) = handle(config(&[]), host(), post(LIMIT, &[])) else {
            panic!()
        };
        done(pending.resume(t, NOW))
    };
    let d = run(reply(r#"{"error":["EOrder:Insufficient funds"]}"#));
    assert_eq!(
        (d.response.status, body(&d)),
        (
            422,
            json!({"error":"order_rejected","kraken_error":"EOrder:Insufficient funds"})
        )
    );
    assert_eq!(events(&d), ["order_rejected"]);

    let d = run(reply(r#"{"error":["EService:Unavailable"]}"#));
    assert_eq!(d.response.status, 202);
    assert_eq!(body(&d)["status"], "pending");
    assert_eq!(events(&d), ["order_pending"]);
    assert!(d.log[0].stderr);

    let d = run(Transport::Lost("timed out".into()));
    assert_eq!(d.response.status, 202);

    let d = run(reply(r#"{"error":["EAPI:Rate limit exceeded"]}"#));
    assert_eq!(
        (d.response.status, d.response.header("retry-after")),
        (503, Some("5"))
    );

    let d = run(Transport::NotSent("connection refused".into()));
    assert_eq!(d.response.status, 503);
}

#[test]
fn stale_alerts() {
    let at = |ts: &str| LIMIT.replace(r#""symbol""#, &format!(r#""timestamp":"{ts}","symbol""#));
    assert!(matches!(
        handle(config(&[]), host(), post(&at("2025-11-28T18:39:00Z"), &[])),
        Step::Send(..)
    ));
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
    let d = done(handle(
        config(&[]),
        host(),
        Request {
            method: "GET".into(),
            path: "/nope".into(),
            headers: vec![],
            body: vec![],
        },
    ));
    assert_eq!(d.response.status, 404);
    assert_eq!(d.response.header("x-request-id"), Some("req-1"));
    for (k, v) in crate::response::SECURITY_HEADERS {
        assert_eq!(d.response.header(k), Some(*v));
    }
    let d = done(handle(
        config(&[]),
        host(),
        Request {
            method: "GET".into(),
            path: "/webhook".into(),
            headers: vec![],
            body: vec![],
        },
    ));
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
