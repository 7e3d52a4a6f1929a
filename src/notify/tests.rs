use super::*;

const URL: &str = "https://discord.example/api/webhooks/123/tok-3n-secret-path";

fn target(format: Format) -> Target {
    Target {
        url: Secret::new(URL),
        format,
        chat_id: (format == Format::Telegram).then(|| "-100123".to_string()),
    }
}

fn ctx() -> Context {
    Context {
        now: Now(1_764_355_200_000_000),
        request_id: "req-1".into(),
        client_addr: None,
    }
}

/// When a delivery fails: two seconds after the request.
fn later() -> Now {
    Now(1_764_355_202_000_000)
}

fn placed() -> Event {
    Event::new(Level::Info, "order_placed")
        .with("pair", "XBTUSD")
        .with("side", "buy")
        .with("order_type", "limit")
        .with("volume", "1.25")
        .with("price", "37500")
        .with("txid", vec!["OAAAAA-BBBBB-CCCCCC"])
        .with("cl_ord_id", "tvk-abc")
}

fn notice_for(format: Format, event: &Event, secrets: &[&Secret]) -> Notice {
    let line = audit::render(event, &ctx(), secrets);
    notice(&target(format), event, &line, &ctx(), Level::Info).expect("an order outcome")
}

fn body(n: &Notice) -> Value {
    serde_json::from_slice(&n.call.body).unwrap()
}

#[test]
fn each_format_has_its_receivers_shape() {
    let json = notice_for(Format::Json, &placed(), &[]);
    let b = body(&json);
    assert_eq!(b["event"], "order_placed");
    assert_eq!(b["txid"][0], "OAAAAA-BBBBB-CCCCCC");
    assert_eq!(b["request_id"], "req-1");
    assert_eq!(b["ts"], "2025-11-28T18:40:00.000Z");

    let text = "order_placed: buy 1.25 XBTUSD limit @ 37500 · txid OAAAAA-BBBBB-CCCCCC · \
                cl_ord_id tvk-abc · request_id req-1";
    assert_eq!(
        body(&notice_for(Format::Discord, &placed(), &[])),
        json!({ "content": text })
    );
    assert_eq!(
        body(&notice_for(Format::Slack, &placed(), &[])),
        json!({ "text": text })
    );
    assert_eq!(
        body(&notice_for(Format::Telegram, &placed(), &[])),
        json!({ "chat_id": "-100123", "text": text })
    );
}

#[test]
fn the_post_goes_to_the_url_as_json_within_the_time_limit() {
    let n = notice_for(Format::Slack, &placed(), &[]);
    assert_eq!(n.call.method, "POST");
    assert_eq!(n.call.url, URL);
    assert_eq!(
        n.call.headers,
        [("content-type".to_string(), "application/json".to_string())]
    );
    assert_eq!(n.call.timeout_ms, NOTIFY_TIMEOUT_MS);
    assert_eq!(n.event, "order_placed");
    // Debug output never shows the URL.
    assert!(!format!("{n:?}").contains("tok-3n"), "{n:?}");
}

#[test]
fn only_order_outcomes_are_notified() {
    let line = |e: &Event| audit::render(e, &ctx(), &[]);
    for name in [
        "auth_failed",
        "ip_denied",
        "alert_duplicate",
        "config_error",
        "notify_failed",
    ] {
        let e = Event::new(Level::Warn, name);
        assert!(
            notice(&target(Format::Json), &e, &line(&e), &ctx(), Level::Info).is_none(),
            "{name}"
        );
    }
    // The contract's outcomes (section 3): placed (validated for a dry run), refused by the
    // bridge or by Kraken, pending, cancelled, and a position alert already in position.
    let outcomes = [
        "in_position",
        "order_placed",
        "order_validated",
        "alert_rejected",
        "stale",
        "trading_disabled",
        "rate_limited",
        "order_rejected",
        "order_pending",
        "orders_cancelled",
    ];
    assert_eq!(NOTIFIED_EVENTS.len(), outcomes.len());
    for name in outcomes {
        let e = Event::new(Level::Warn, name);
        assert!(
            notice(&target(Format::Json), &e, &line(&e), &ctx(), Level::Info).is_some(),
            "{name}"
        );
    }
}

#[test]
fn a_notification_carries_no_secret() {
    let api_key = Secret::new("kraken-public-key-value");
    let event = placed()
        .with(
            "reason",
            "the key kraken-public-key-value leaked into a reason",
        )
        .with("api_secret", "masked-by-name");
    for format in [
        Format::Json,
        Format::Discord,
        Format::Slack,
        Format::Telegram,
    ] {
        let n = notice_for(format, &event, &[&api_key]);
        let sent = String::from_utf8(n.call.body.clone()).unwrap();
        assert!(!sent.contains("kraken-public-key-value"), "{sent}");
        assert!(!sent.contains("masked-by-name"), "{sent}");
        assert!(!sent.contains("tok-3n"), "{sent}");
    }
}

#[test]
fn a_dry_run_says_so_and_a_real_order_does_not() {
    let real = body(&notice_for(
        Format::Slack,
        &placed().with("validate", false),
        &[],
    ));
    let text = real["text"].as_str().unwrap();
    assert!(!text.contains("validate"), "{text}");
    let dry = Event::new(Level::Info, "order_validated")
        .with("side", "buy")
        .with("volume", "0.001")
        .with("pair", "XBTUSD")
        .with("order_type", "market")
        .with("validate", true);
    let b = body(&notice_for(Format::Slack, &dry, &[]));
    assert_eq!(
        b["text"],
        "order_validated: buy 0.001 XBTUSD market · validate (dry run) · request_id req-1"
    );
}

#[test]
fn long_texts_are_cut_for_the_chat() {
    let e = placed().with("reason", "x".repeat(5_000));
    let b = body(&notice_for(Format::Discord, &e, &[]));
    let content = b["content"].as_str().unwrap();
    assert_eq!(content.chars().count(), MAX_TEXT_CHARS + 1);
    assert!(content.ends_with('…'));
}

#[test]
fn a_failed_delivery_is_one_warning_without_the_url() {
    let n = notice_for(Format::Discord, &placed(), &[]);
    let ok = Transport::Reply {
        status: 204,
        body: Vec::new(),
    };
    assert_eq!(delivery_line(&n, &ok, later()), None);

    let cases = [
        (
            Transport::Reply {
                status: 500,
                body: format!("error at {URL}").into_bytes(),
            },
            json!({"reason": "receiver_refused", "status": 500}),
        ),
        (
            Transport::Lost(format!("no answer from {URL}")),
            json!({"reason": "no_answer"}),
        ),
        (
            Transport::NotSent(format!("HttpRequestDenied {URL}")),
            json!({"reason": "unreachable"}),
        ),
    ];
    for (transport, want) in cases {
        let line = delivery_line(&n, &transport, later()).expect("a failure is logged");
        assert!(!line.stderr, "a warning goes to stdout");
        assert!(!line.text.contains("tok-3n"), "{}", line.text);
        assert!(!line.text.contains("discord.example"), "{}", line.text);
        crate::audit::documented::check(&line.text);
        let v: Value = serde_json::from_str(&line.text).unwrap();
        assert_eq!(v["event"], "notify_failed");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["notified_event"], "order_placed");
        assert_eq!(v["format"], "discord");
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["ts"], "2025-11-28T18:40:02.000Z");
        for (k, w) in want.as_object().unwrap() {
            assert_eq!(&v[k], w, "{}", line.text);
        }
    }
}

#[test]
fn log_level_error_silences_delivery_failures() {
    let e = placed();
    let line = audit::render(&e, &ctx(), &[]);
    let n = notice(&target(Format::Json), &e, &line, &ctx(), Level::Error).unwrap();
    assert_eq!(
        delivery_line(&n, &Transport::Lost("timed out".into()), later()),
        None
    );
}

#[test]
fn formats_and_urls_parse_strictly() {
    assert_eq!(Format::parse(" Discord "), Some(Format::Discord));
    assert_eq!(Format::parse("json"), Some(Format::Json));
    assert_eq!(Format::parse("teams"), None);
    assert!(check_url("https://hooks.slack.com/services/T/B/X").is_ok());
    assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
    for bad in [
        "hooks.slack.com/x",
        "ftp://x/y",
        "https://",
        "https:///path",
        "https://a b/",
        // What the adapter could not send: no path after the host.
        "https://hooks.example.com",
        "https://hooks.example.com?x=1",
    ] {
        assert!(check_url(bad).is_err(), "{bad}");
    }
}
