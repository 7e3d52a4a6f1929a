//! The real Spin-flavour component in the embedded host, trading on the simulator over
//! loopback: contract sections 1, 2, 2.1, 2.2 and 2.5 for this slice.

mod common;

use bridge_host::SpinHost;
use common::*;
use kraken_sim::{Fault, FaultKind};
use serde_json::{Value, json};

fn only_order(sim: &kraken_sim::Sim) -> kraken_sim::BookedOrder {
    let orders = sim.orders();
    assert_eq!(orders.len(), 1, "exactly one order must reach the exchange");
    orders.into_iter().next().unwrap()
}

#[test]
fn tradingview_alert_becomes_one_signed_add_order() {
    for content_type in ["application/json", "text/plain"] {
        let sim = sim();
        let host = spin_host(&sim, &[]);
        let ex = send(
            &host,
            post(
                limit_alert(WEBHOOK_SECRET),
                &[("content-type", content_type)],
            ),
        );
        assert_eq!(ex.status, 200, "{ex}");

        let order = only_order(&sim);
        let requests = private_requests(&sim);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].signature_valid, Some(true));
        assert_eq!(requests[0].method.as_deref(), Some("AddOrder"));
        let p = &order.params;
        assert_eq!(p["pair"], "XBTUSD");
        assert_eq!(p["type"], "buy");
        assert_eq!(p["ordertype"], "limit");
        assert_eq!(p["volume"], "0.0125");
        assert_eq!(p["price"], "37500.5");
        assert_eq!(p["cl_ord_id"].len(), 32);
        assert!(!p.contains_key("validate"));

        let body = ex.json();
        assert_eq!(body["status"], "placed");
        assert_eq!(body["txid"], json!([order.txid]));
        assert_eq!(body["cl_ord_id"], p["cl_ord_id"].as_str());
        assert!(body["description"].as_str().unwrap().contains("XBTUSD"));
        assert_eq!(events(&ex), ["order_placed"]);
    }
}

#[test]
fn market_alert_with_json_number_volume() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    let body =
        format!(r#"{{"secret":"{WEBHOOK_SECRET}","symbol":"xbtusd","side":"SELL","volume":0.01}}"#);
    let ex = send(&host, post(body, &[("content-type", "application/json")]));
    assert_eq!(ex.status, 200, "{ex}");
    let order = only_order(&sim);
    assert_eq!(order.params["volume"], "0.01");
    assert_eq!(order.params["ordertype"], "market");
    assert_eq!(order.params["type"], "sell");
    assert!(!order.params.contains_key("price"));
}

#[test]
fn signed_relay_request_with_either_secret() {
    let sim = sim();
    let host = spin_host(&sim, &[("webhook_secret_previous", PREVIOUS_SECRET)]);
    for (i, key) in [WEBHOOK_SECRET, PREVIOUS_SECRET].iter().enumerate() {
        let body =
            format!(r#"{{"id":"relay-{i}","symbol":"XBTUSD","side":"buy","volume":"0.001"}}"#);
        let sig = tv_kraken_bridge::auth::sign_hex(key.as_bytes(), body.as_bytes());
        let ex = send(
            &host,
            post(body, &[("x-signature", &format!("sha256={sig}"))]),
        );
        assert_eq!(ex.status, 200, "{ex}");
    }
    assert_eq!(sim.orders().len(), 2);
}

#[test]
fn previous_secret_in_the_body_during_rotation() {
    let sim = sim();
    let host = spin_host(&sim, &[("webhook_secret_previous", PREVIOUS_SECRET)]);
    let ex = send(&host, post(limit_alert(PREVIOUS_SECRET), &[]));
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(sim.orders().len(), 1);
}

/// Bad alerts get the contract's status and nothing reaches the exchange.
#[test]
fn bad_alerts_change_nothing() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    let good = limit_alert(WEBHOOK_SECRET);
    let good_sig = tv_kraken_bridge::auth::sign_hex(WEBHOOK_SECRET.as_bytes(), good.as_bytes());
    let wrong_sig =
        tv_kraken_bridge::auth::sign_hex(b"not-the-secret-but-32-bytes-long!", good.as_bytes());
    let huge = format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","symbol":"XBTUSD","side":"buy","volume":"1","comment":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, u16, Value);
    let cases: Vec<Case> = vec![
        (
            "wrong secret",
            limit_alert("e2e-webhook-secret-9f3b1c7d2a6e4f81"),
            vec![],
            401,
            json!({"error":"unauthorized"}),
        ),
        (
            "no secret",
            good.replace(&format!(r#""secret":"{WEBHOOK_SECRET}","#), ""),
            vec![],
            401,
            json!({"error":"unauthorized"}),
        ),
        (
            "wrong signature",
            good.clone(),
            vec![("x-signature", wrong_sig)],
            401,
            json!({"error":"unauthorized"}),
        ),
        (
            "signature of another body",
            good.replace("0.0125", "0.0126"),
            vec![("x-signature", good_sig.clone())],
            401,
            json!({"error":"unauthorized"}),
        ),
        (
            "signature too short",
            good.clone(),
            vec![("x-signature", good_sig[..63].to_string())],
            401,
            json!({"error":"unauthorized"}),
        ),
        (
            "unsigned broken JSON",
            format!(r#"{{"secret":"{WEBHOOK_SECRET}","volume":NaN}}"#),
            vec![("content-type", "text/plain".into())],
            401,
            json!({"error":"unauthorized"}),
        ),
        (
            "unknown field",
            good.replace(r#""side":"buy""#, r#""side":"buy","sidee":"sell""#),
            vec![],
            422,
            json!({"error":"invalid_alert","field":"sidee","reason":"unknown field; see the alert fields in the README"}),
        ),
        (
            "negative volume",
            good.replace("0.0125", "-0.0125"),
            vec![],
            422,
            json!({"error":"invalid_alert","field":"volume","reason":"must be positive"}),
        ),
        (
            "17 KiB body",
            huge,
            vec![],
            413,
            json!({"error":"payload_too_large"}),
        ),
        (
            "wrong content type",
            good.clone(),
            vec![("content-type", "application/x-www-form-urlencoded".into())],
            415,
            json!({"error":"unsupported_media_type"}),
        ),
        (
            "repeated key",
            good.replace(r#""side":"buy""#, r#""side":"buy","side":"sell""#),
            vec![("x-signature", String::new())],
            401,
            json!({"error":"unauthorized"}),
        ),
    ];
    for (name, body, headers, status, expected) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let ex = send(&host, post(body, &headers));
        assert_eq!(ex.status, status, "{name}: {ex}");
        assert_eq!(ex.json(), expected, "{name}");
        assert!(ex.outbound.is_empty(), "{name}: the bridge called out");
    }
    assert!(
        sim.requests().is_empty(),
        "a bad alert reached the exchange"
    );
    assert!(sim.orders().is_empty());
}

#[test]
fn signed_but_malformed_body_is_400() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    for body in [
        r#"{"symbol":"XBTUSD","volume":NaN}"#,
        "[1,2]",
        r#"{"a":1,"a":2}"#,
        "",
    ] {
        let sig = tv_kraken_bridge::auth::sign_hex(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
        let ex = send(&host, post(body.to_string(), &[("x-signature", &sig)]));
        assert_eq!(
            (ex.status, ex.json()),
            (400, json!({"error":"malformed_json"})),
            "{body}"
        );
    }
    assert!(sim.requests().is_empty());
}

#[test]
fn a_31_byte_webhook_secret_accepts_nothing() {
    let sim = sim();
    let short = &WEBHOOK_SECRET[..31];
    let host = spin_host(&sim, &[("webhook_secret", short)]);
    let ex = send(&host, post(limit_alert(short), &[]));
    assert_eq!(
        (ex.status, ex.json()),
        (503, json!({"error":"misconfigured"})),
        "{ex}"
    );
    assert_eq!(events(&ex), ["config_error"]);
    let health = send(&host, get("/health"));
    assert_eq!(health.status, 503);
    let h = health.json();
    assert_eq!(h["status"], "misconfigured");
    assert_eq!(h["problems"][0]["setting"], "webhook_secret");
    assert!(!health.text().contains(short));
    assert!(sim.requests().is_empty());
}

#[test]
fn unparseable_settings_are_reported_by_health() {
    let sim = sim();
    for (name, value) in [
        ("trading_enabled", "yes"),
        ("dry_run", "sometimes"),
        ("environment", "staging"),
        ("log_level", "loud"),
        ("kraken_api_url", "https://api.kraken.com/0"),
        ("kraken_api_secret", "%%%"),
        ("webhook_secret_previous", "short"),
    ] {
        let host = spin_host(&sim, &[(name, value)]);
        let h = send(&host, get("/health"));
        assert_eq!(h.status, 503, "{name}");
        let problems: Vec<String> = h.json()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["setting"].as_str().unwrap().to_string())
            .collect();
        assert!(problems.contains(&name.to_string()), "{name}: {problems:?}");
        let ex = send(&host, post(limit_alert(WEBHOOK_SECRET), &[]));
        assert_eq!(ex.status, 503, "{name}");
    }
    assert!(sim.requests().is_empty());
}

#[test]
fn dry_run_and_validate_place_nothing() {
    let sim = sim();
    let ex = send(
        &spin_host(&sim, &[("dry_run", "true")]),
        post(limit_alert(WEBHOOK_SECRET), &[]),
    );
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(ex.json()["status"], "validated");
    assert!(
        ex.json()["description"]
            .as_str()
            .unwrap()
            .contains("XBTUSD")
    );
    assert_eq!(events(&ex), ["order_validated"]);

    let alert = limit_alert(WEBHOOK_SECRET).replace(r#""side""#, r#""validate":true,"side""#);
    let ex = send(&spin_host(&sim, &[]), post(alert, &[]));
    assert_eq!(ex.json()["status"], "validated", "{ex}");

    let requests = private_requests(&sim);
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r.params.get("validate").map(String::as_str) == Some("true"))
    );
    assert!(sim.orders().is_empty());
}

#[test]
fn kill_switch_refuses_with_423() {
    let sim = sim();
    let ex = send(
        &spin_host(&sim, &[("trading_enabled", "false")]),
        post(limit_alert(WEBHOOK_SECRET), &[]),
    );
    assert_eq!(
        (ex.status, ex.json()),
        (423, json!({"error":"trading_disabled"}))
    );
    assert_eq!(events(&ex), ["trading_disabled"]);
    assert!(sim.requests().is_empty());
}

#[test]
fn kraken_refusal_is_422_with_its_error() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    // More than the account can pay for: only Kraken knows.
    let ex = send(
        &host,
        post(limit_alert(WEBHOOK_SECRET).replace("0.0125", "30"), &[]),
    );
    assert_eq!(
        (ex.status, ex.json()),
        (
            422,
            json!({"error":"order_rejected","kraken_error":"EOrder:Insufficient funds"})
        ),
        "{ex}"
    );
    assert_eq!(events(&ex), ["order_rejected"]);
    assert!(sim.orders().is_empty());
}

#[test]
fn precision_and_minimums_are_handled_before_kraken() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    // Below XBTUSD's ordermin: refused by the bridge, naming the minimum.
    let ex = send(
        &host,
        post(
            limit_alert(WEBHOOK_SECRET).replace("0.0125", "0.00001"),
            &[],
        ),
    );
    assert_eq!(ex.status, 422, "{ex}");
    assert_eq!(ex.json()["error"], "below_minimum");
    assert!(ex.json()["reason"].as_str().unwrap().contains("0.00005"));
    assert!(private_requests(&sim).is_empty());
    // More price decimals than the pair allows: a buy's limit is rounded down, never up.
    let ex = send(
        &host,
        post(
            limit_alert(WEBHOOK_SECRET).replace("37500.5", "37500.59"),
            &[],
        ),
    );
    assert_eq!(ex.status, 200, "{ex}");
    assert_eq!(only_order(&sim).params["price"], "37500.5");
}

#[test]
fn ambiguous_kraken_answers_are_looked_up_never_5xx() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    // The order was booked but the answer lost: the look-up finds it.
    for (i, kind) in [
        FaultKind::ErrorAfterBook {
            error: "EService:Unavailable".into(),
        },
        FaultKind::DropAfterBook,
    ]
    .into_iter()
    .enumerate()
    {
        sim.push_fault(Fault::on("AddOrder", kind.clone()));
        let body =
            limit_alert(WEBHOOK_SECRET).replace(r#""side""#, &format!(r#""id":"amb-{i}","side""#));
        let ex = send(&host, post(body, &[]));
        assert_eq!(ex.status, 200, "{kind:?}: {ex}");
        let booked = sim.orders();
        assert_eq!(
            ex.json()["txid"],
            json!([booked.last().unwrap().txid]),
            "{kind:?}"
        );
    }
    // A 502 from in front of Kraken: nothing booked, not found, pending (never 5xx).
    sim.push_fault(Fault::on(
        "AddOrder",
        FaultKind::HttpStatus {
            status: 502,
            body: "<html>bad gateway</html>".into(),
        },
    ));
    let ex = send(&host, post(limit_alert(WEBHOOK_SECRET), &[]));
    assert_eq!(ex.status, 202, "{ex}");
    assert_eq!(ex.json()["status"], "pending");
    assert_eq!(ex.json()["cl_ord_id"].as_str().unwrap().len(), 32);
    assert_eq!(events(&ex), ["order_pending"]);
    assert!(
        ex.stderr.contains("order_pending"),
        "order_pending goes to stderr"
    );
    assert_eq!(sim.orders().len(), 2);
}

#[test]
fn certainly_not_placed_is_503_with_retry_after() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    sim.push_fault(Fault::on("AddOrder", FaultKind::RateLimit));
    let ex = send(&host, post(limit_alert(WEBHOOK_SECRET), &[]));
    assert_eq!(ex.status, 503, "{ex}");
    assert!(ex.header("retry-after").is_some());
    assert!(sim.orders().is_empty());
}

#[test]
fn production_manifest_allows_only_kraken() {
    // With spin.toml's allow-list the simulator is unreachable: the host denies the call and
    // the bridge knows nothing was sent.
    let sim = sim();
    let host = SpinHost::builder(bridge_host::wasm_path(bridge_host::Flavour::Spin))
        .variables(settings(&sim))
        .allowed_outbound_hosts(["https://api.kraken.com"])
        .build();
    let ex = send(&host, post(limit_alert(WEBHOOK_SECRET), &[]));
    assert_eq!(ex.status, 503, "{ex}");
    assert_eq!(ex.outbound.len(), 1);
    assert!(!ex.outbound[0].allowed);
    assert!(sim.requests().is_empty());
}

#[test]
fn http_surface() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    let cases = [
        (get("/health"), 200, None),
        (get("/config"), 404, None),
        (get("/nope"), 404, None),
        (get("/webhook"), 405, Some("POST")),
        (
            http::Request::delete("/health")
                .body(bytes::Bytes::new())
                .unwrap(),
            405,
            Some("GET"),
        ),
        (post("{}", &[]), 401, None),
    ];
    let mut ids = std::collections::HashSet::new();
    for (req, status, allow) in cases {
        let ex = send(&host, req);
        assert_eq!(ex.status, status, "{ex}");
        assert_eq!(ex.header("allow"), allow);
        assert_eq!(ex.header("content-type"), Some("application/json"));
        for (name, value) in tv_kraken_bridge::response::SECURITY_HEADERS {
            assert_eq!(ex.header(name), Some(*value), "{name}");
        }
        assert!(ex.header("access-control-allow-origin").is_none());
        let id = ex.header("x-request-id").expect("x-request-id").to_string();
        assert_eq!(id.len(), 32);
        assert!(ids.insert(id), "request ids must differ");
        serde_json::from_slice::<Value>(&ex.body).expect("JSON body");
    }
    let h = send(&host, get("/health")).json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["flavour"], "spin");
    assert_eq!(h["state_store"], "default");
    assert_eq!(h["trading_enabled"], true);
    assert_eq!(h["dry_run"], false);
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn config_only_in_development_and_secrets_masked() {
    let sim = sim();
    let host = spin_host(
        &sim,
        &[
            ("environment", "development"),
            ("kraken_otp", "otp-value-123456"),
        ],
    );
    let ex = send(&host, get("/config"));
    assert_eq!(ex.status, 200, "{ex}");
    let c = ex.json();
    for name in [
        "webhook_secret",
        "kraken_api_key",
        "kraken_api_secret",
        "kraken_otp",
    ] {
        assert_eq!(c[name], "***", "{name}");
    }
    assert_eq!(c["webhook_secret_previous"], Value::Null);
    assert_eq!(c["kraken_api_url"], sim.url());
    assert!(!ex.text().contains("otp-value-123456"));
}

#[test]
fn development_detail_and_production_codes() {
    let sim = sim();
    let bad = limit_alert(WEBHOOK_SECRET).replace("0.0125", "1e-3");
    let prod = send(&spin_host(&sim, &[]), post(bad.clone(), &[])).json();
    assert!(prod.get("detail").is_none());
    let dev = send(
        &spin_host(&sim, &[("environment", "development")]),
        post(bad, &[]),
    )
    .json();
    assert_eq!(
        dev["detail"],
        "volume: must be a plain decimal number such as 0.01 (no sign, exponent or spaces)"
    );
}

#[test]
fn audit_lines_are_json_with_the_contract_fields() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    let ex = send(
        &host,
        post(limit_alert("wrong-secret-wrong-secret-wrong-secret"), &[]),
    );
    let line: Value = serde_json::from_str(ex.stdout.lines().next().expect("one line")).unwrap();
    assert_eq!(line["event"], "auth_failed");
    assert_eq!(line["level"], "warn");
    assert_eq!(line["client_addr"], "52.89.214.238:41234");
    assert_eq!(line["request_id"], ex.header("x-request-id").unwrap());
    assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    assert!(
        !ex.stdout.contains("wrong-secret"),
        "auth_failed never contains what was supplied"
    );
}

#[test]
fn nonces_strictly_increase_across_requests() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    for i in 0..5 {
        let body =
            limit_alert(WEBHOOK_SECRET).replace(r#""side""#, &format!(r#""id":"n{i}","side""#));
        assert_eq!(send(&host, post(body, &[])).status, 200);
    }
    let nonces: Vec<u64> = private_requests(&sim)
        .iter()
        .map(|r| r.params["nonce"].parse().unwrap())
        .collect();
    assert!(nonces.windows(2).all(|w| w[0] < w[1]), "{nonces:?}");
    // Microseconds since the epoch: 16 digits today.
    assert!(
        nonces.iter().all(|n| n.to_string().len() == 16),
        "{nonces:?}"
    );
}

#[test]
fn allowed_ips_use_spins_client_address_and_fail_closed() {
    let sim = sim();
    let tv = tv_kraken_bridge::network::TRADINGVIEW_IPS;
    let host_from = |addr: Option<&str>| {
        let mut vars = settings(&sim);
        vars.push(("allowed_ips".into(), tv.into()));
        bridge_host::SpinHost::builder(bridge_host::wasm_path(bridge_host::Flavour::Spin))
            .variables(vars)
            .allow_outbound(sim.url())
            .client_addr(addr)
            .build()
    };
    let ex = send(
        &host_from(Some("34.212.75.30:40000")),
        post(limit_alert(WEBHOOK_SECRET), &[]),
    );
    assert_eq!(ex.status, 200, "{ex}");
    // Spin overwrites a client-sent spin-client-addr with the real peer address.
    let ex = send(
        &host_from(Some("203.0.113.5:40000")),
        post(
            limit_alert(WEBHOOK_SECRET),
            &[("spin-client-addr", "34.212.75.30:1")],
        ),
    );
    assert_eq!((ex.status, ex.json()), (403, json!({"error":"forbidden"})));
    assert_eq!(events(&ex), ["ip_denied"]);
    // No address from the host at all: deny.
    let ex = send(&host_from(None), post(limit_alert(WEBHOOK_SECRET), &[]));
    assert_eq!(ex.status, 403);
    assert_eq!(sim.orders().len(), 1);
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let sim = sim();
    let host = spin_host(&sim, &[("rate_limit_per_minute", "2")]);
    let alert = |i: usize| {
        limit_alert(WEBHOOK_SECRET).replace(r#""side""#, &format!(r#""id":"rl-{i}","side""#))
    };
    // A minute boundary between the requests would reset the count: retry once if so.
    for attempt in 0..2 {
        let answers: Vec<_> = (0..3)
            .map(|i| send(&host, post(alert(attempt * 10 + i), &[])))
            .collect();
        if answers[2].status == 200 {
            continue;
        }
        assert_eq!(answers[0].status, 200);
        assert_eq!(answers[1].status, 200);
        assert_eq!(
            (answers[2].status, answers[2].json()),
            (429, json!({"error":"rate_limited"}))
        );
        assert!(answers[2].header("retry-after").is_some());
        assert_eq!(events(&answers[2]), ["rate_limited"]);
        return;
    }
    panic!("the third alert of a minute was never refused");
}
