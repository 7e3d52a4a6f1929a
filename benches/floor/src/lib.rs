//! The benchmark's floors, one component per build:
//!
//! - the default build, the **floor**: answers every request `200 {"status":"ok"}`, nothing
//!   else;
//! - `--features io`, the **I/O floor**: the host I/O the contract makes the bridge do on each
//!   benchmarked path, and no logic. A webhook reads its body and the `WEBHOOK_SECRET`
//!   environment variable; a wrong secret gets one audit line and `401` with the contract's
//!   headers; a right one makes the three Kraken calls an accepted market alert of the portable
//!   flavour makes (`AssetPairs` for one pair; `Ticker`, whose last trade prices the order for
//!   the `costmin` check; `AddOrder`, left unsigned: the simulator answers
//!   `EAPI:Invalid signature` after checking it), writes one audit line and answers `200`.
//!   `/health` reads one setting and answers `200` with the contract's headers.
//! - `--features io-spin`, the **I/O floor under Spin**: the same, with the Spin flavour's host
//!   I/O (see [`io_spin`]): settings from Spin variables, and every key-value operation sent
//!   to a private store component of the same app through Spin's service chaining, which
//!   performs it on the `default` store.
//! - `--features probe`, the **probe**: the hello-world floor plus host calls chosen per request
//!   (see [`probe`]), to weigh each of the bridge's host calls on its own.

#[cfg(any(
    all(feature = "io", feature = "io-spin"),
    all(feature = "io", feature = "probe"),
    all(feature = "io-spin", feature = "probe")
))]
compile_error!("the features `io`, `io-spin` and `probe` build different components: pick one");

#[cfg(not(any(feature = "io", feature = "io-spin", feature = "probe")))]
mod floor {
    use spin_sdk::http::{IntoResponse, Request, Response};

    #[spin_sdk::http_component]
    fn handle(_request: Request) -> anyhow::Result<impl IntoResponse> {
        Ok(Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(r#"{"status":"ok"}"#)
            .build())
    }
}

#[cfg(feature = "io")]
mod io {
    use spin_sdk::http::{send, Request, Response};

    /// Every response's headers (contract section 1), `x-request-id` aside.
    const HEADERS: [(&str, &str); 7] = [
        ("content-type", "application/json"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("strict-transport-security", "max-age=31536000"),
    ];

    fn answer(status: u16, body: &str) -> Response {
        let mut builder = Response::builder();
        builder.status(status);
        for (name, value) in HEADERS {
            builder.header(name, value);
        }
        builder.header("x-request-id", "0123456789abcdef0123456789abcdef");
        builder.body(body.to_owned()).build()
    }

    #[spin_sdk::http_component]
    async fn handle(request: Request) -> anyhow::Result<Response> {
        let secret = std::env::var("WEBHOOK_SECRET").unwrap_or_default();
        if request.path() != "/webhook" {
            let status = if secret.is_empty() { 503 } else { 200 };
            return Ok(answer(status, r#"{"status":"ok"}"#));
        }
        let needle = format!("\"secret\":\"{secret}\"");
        let body = request.body();
        let authentic =
            !secret.is_empty() && body.windows(needle.len()).any(|w| w == needle.as_bytes());
        if !authentic {
            println!(r#"{{"event":"auth_failed","level":"warn","reason":"wrong_secret"}}"#);
            return Ok(answer(401, r#"{"error":"unauthorized"}"#));
        }
        let base = std::env::var("KRAKEN_API_URL").unwrap_or_default();
        let pairs: Response = send(Request::get(format!(
            "{base}/0/public/AssetPairs?pair=XBTUSD"
        )))
        .await?;
        let ticker: Response = send(Request::get(format!(
            "{base}/0/public/Ticker?pair=XXBTZUSD"
        )))
        .await?;
        let order = Request::post(
            format!("{base}/0/private/AddOrder"),
            "nonce=1&ordertype=market&type=buy&volume=0.001&pair=XXBTZUSD&validate=true",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "api-key",
            std::env::var("KRAKEN_API_KEY").unwrap_or_default(),
        )
        .header("api-sign", "AAAA")
        .build();
        let order: Response = send(order).await?;
        println!(
            r#"{{"event":"order_validated","level":"info","pairs":{},"ticker":{},"order":{}}}"#,
            pairs.status(),
            ticker.status(),
            order.status()
        );
        Ok(answer(200, r#"{"status":"validated"}"#))
    }
}

/// The I/O floor under Spin: the host I/O the contract makes the Spin flavour do on each
/// benchmarked path, and no logic. Served with the bridge's own manifest shape (scripts/bench
/// derives it from `spin.local.toml`): the public component `bridge` and the private
/// `bridge-store`, both this build.
///
/// - A webhook reads its body and the `webhook_secret` variable. A wrong secret: one audit
///   line and `401` with the contract's headers. A right one: the settings an order needs
///   (`kraken_api_url`, `kraken_api_key`, `kraken_api_secret`), then the store calls an
///   accepted alert makes before its answer (2 record reads, the minute's increment, the
///   record write, the claim increment, the cached pair read), its Kraken calls with the
///   pair cached (`Ticker`, `AddOrder` left unsigned), one audit line, the answer `200`, and
///   after it the record's read and write.
/// - `/health` reads every setting (its status reports each one's problems) and asks the
///   store for one key, then answers `200` with the contract's headers.
/// - `/.store?op=get|set|incr&key=K` (the store component, reached only through service
///   chaining): one operation on the `default` store; a `set` stores the request's body.
#[cfg(feature = "io-spin")]
mod io_spin {
    use spin_sdk::http::{
        send, Fields, IncomingRequest, OutgoingResponse, Request, ResponseOutparam,
    };
    use spin_sdk::wit::wasi::keyvalue::{atomics, store};

    /// Where the store operations go: the app's store component.
    const STORE_URL: &str = "http://bridge-store.spin.internal/.store";

    /// Every setting `/health` reports on (the bridge's `config::SETTINGS`).
    const SETTINGS: [&str; 29] = [
        "webhook_secret",
        "webhook_secret_previous",
        "kraken_api_key",
        "kraken_api_secret",
        "kraken_otp",
        "kraken_api_keys",
        "kraken_accounts",
        "kraken_api_url",
        "environment",
        "trading_enabled",
        "dry_run",
        "allowed_symbols",
        "symbol_map",
        "max_order_value",
        "position_reserve",
        "position_negative",
        "max_position_value",
        "rate_limit_per_minute",
        "allowed_ips",
        "client_ip_header",
        "require_timestamp",
        "replay_window_seconds",
        "dedupe_window_seconds",
        "state_max_keys",
        "cors_allowed_origins",
        "log_level",
        "notify_url",
        "notify_format",
        "notify_chat_id",
    ];

    /// Every response's headers (contract section 1), `x-request-id` aside.
    const HEADERS: [(&str, &str); 7] = [
        ("content-type", "application/json"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("strict-transport-security", "max-age=31536000"),
    ];

    fn setting(name: &str) -> String {
        spin_sdk::variables::get(name).unwrap_or_default()
    }

    async fn answer(out: ResponseOutparam, status: u16, body: &str) {
        let mut fields: Vec<(String, Vec<u8>)> = HEADERS
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        fields.push((
            "x-request-id".into(),
            b"0123456789abcdef0123456789abcdef".to_vec(),
        ));
        let response = OutgoingResponse::new(Fields::from_list(&fields).expect("valid headers"));
        let _ = response.set_status_code(status);
        let _ = out.set_with_body(response, body.as_bytes().to_vec()).await;
    }

    /// One operation through the store component; its answer's body.
    async fn store_call(op: &str, key: &str, value: &[u8]) -> Vec<u8> {
        let request = Request::post(format!("{STORE_URL}?op={op}&key={key}"), value.to_vec())
            .header("content-type", "application/octet-stream")
            .build();
        match send::<_, spin_sdk::http::Response>(request).await {
            Ok(response) => response.into_body(),
            Err(_) => Vec::new(),
        }
    }

    /// The store component's side.
    fn serve_store(query: &str, value: &[u8]) -> (u16, Vec<u8>) {
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_default()
        };
        let Ok(bucket) = store::open("default") else {
            return (500, Vec::new());
        };
        let key = param("key");
        let result = match param("op") {
            "get" => bucket.get(key).map(Option::unwrap_or_default),
            "set" => bucket.set(key, value).map(|()| Vec::new()),
            "incr" => atomics::increment(&bucket, key, 1).map(|n| n.to_string().into_bytes()),
            _ => return (400, Vec::new()),
        };
        match result {
            Ok(body) => (200, body),
            Err(_) => (500, Vec::new()),
        }
    }

    /// The alert's `id`, to key its record (no parsing: the text up to the next quote).
    fn alert_id(body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        text.split_once("\"id\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or_else(|| body.len().to_string(), |(id, _)| id.to_string())
    }

    #[spin_sdk::http_component]
    async fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = request.into_body().await.unwrap_or_default();
        if let Some(query) = path.strip_prefix("/.store?") {
            let (status, reply) = serve_store(query, &body);
            let response = OutgoingResponse::new(Fields::new());
            let _ = response.set_status_code(status);
            let _ = out.set_with_body(response, reply).await;
            return;
        }
        if path != "/webhook" {
            let values: Vec<String> = SETTINGS.iter().map(|name| setting(name)).collect();
            let probe = store_call("get", "health:probe", b"").await;
            let status = if values[0].is_empty() { 503 } else { 200 };
            let text = format!(r#"{{"status":"ok","store":{}}}"#, probe.len());
            return answer(out, status, &text).await;
        }
        let secret = setting("webhook_secret");
        let needle = format!("\"secret\":\"{secret}\"");
        let authentic =
            !secret.is_empty() && body.windows(needle.len()).any(|w| w == needle.as_bytes());
        if !authentic {
            println!(r#"{{"event":"auth_failed","level":"warn","reason":"wrong_secret"}}"#);
            return answer(out, 401, r#"{"error":"unauthorized"}"#).await;
        }
        let base = setting("kraken_api_url");
        let api_key = setting("kraken_api_key");
        let _api_secret = setting("kraken_api_secret");
        let id = alert_id(&body);
        let record = format!("rec:{id}");
        // Before the answer: the record twice, the minute's count, the record, the claim,
        // the cached pair.
        store_call("get", &record, b"").await;
        store_call("get", &record, b"").await;
        store_call("incr", "rate:minute", b"").await;
        store_call("set", &record, br#"{"state":"in_flight"}"#).await;
        store_call("incr", &format!("claim:{id}"), b"").await;
        store_call("get", "kraken:pair:XBTUSD", b"").await;
        let ticker = send::<_, spin_sdk::http::Response>(Request::get(format!(
            "{base}/0/public/Ticker?pair=XXBTZUSD"
        )))
        .await
        .map_or(0, |r| *r.status());
        let order = Request::post(
            format!("{base}/0/private/AddOrder"),
            "nonce=1&ordertype=market&type=buy&volume=0.001&pair=XXBTZUSD&validate=true",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header("api-key", api_key)
        .header("api-sign", "AAAA")
        .build();
        let order = send::<_, spin_sdk::http::Response>(order)
            .await
            .map_or(0, |r| *r.status());
        println!(
            r#"{{"event":"order_validated","level":"info","ticker":{ticker},"order":{order}}}"#
        );
        answer(out, 200, r#"{"status":"validated"}"#).await;
        // After the answer: the record's outcome.
        store_call("get", &record, b"").await;
        store_call("set", &record, br#"{"state":"validated"}"#).await;
    }
}

/// The probe: answers `200` like the floor, after the host calls its query names, each
/// `name=N` done N times (default 1), in this order:
///
/// - `body`: reads the request's body;
/// - `get=N`: reads the first N of the bridge's settings with `spin_sdk::variables::get`
///   (`fermyon:spin/variables`, one host call each);
/// - `all`: reads every variable of the component in one host call (`wasi:config/store`
///   `get-all`);
/// - `rand`: 16 bytes from `wasi:random`;
/// - `clock`: the wall clock;
/// - `log`: one audit-sized line on stdout;
/// - `headers`: answers with the contract's eight headers instead of one;
/// - `chain`: one request to the app's store component (`/.store`, which reads one key);
/// - `kv`: one key read from the `default` store, directly.
///
/// `GET /probe?get=7&log` weighs what a rejected alert of the bridge does on top of the floor.
#[cfg(feature = "probe")]
mod probe {
    use spin_sdk::http::{
        send, Fields, IncomingRequest, OutgoingResponse, Request, ResponseOutparam,
    };

    const SETTINGS: [&str; 29] = [
        "webhook_secret",
        "webhook_secret_previous",
        "environment",
        "log_level",
        "allowed_ips",
        "client_ip_header",
        "cors_allowed_origins",
        "kraken_api_key",
        "kraken_api_secret",
        "kraken_otp",
        "kraken_api_keys",
        "kraken_accounts",
        "kraken_api_url",
        "trading_enabled",
        "dry_run",
        "allowed_symbols",
        "symbol_map",
        "max_order_value",
        "position_reserve",
        "position_negative",
        "max_position_value",
        "rate_limit_per_minute",
        "require_timestamp",
        "replay_window_seconds",
        "dedupe_window_seconds",
        "state_max_keys",
        "notify_url",
        "notify_format",
        "notify_chat_id",
    ];

    const HEADERS: [(&str, &str); 8] = [
        ("content-type", "application/json"),
        ("x-request-id", "0123456789abcdef0123456789abcdef"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("strict-transport-security", "max-age=31536000"),
    ];

    #[spin_sdk::http_component]
    async fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let times = |name: &str| -> usize {
            query
                .split('&')
                .find_map(|p| match p.split_once('=') {
                    Some((k, v)) if k == name => Some(v.parse().unwrap_or(1)),
                    None if p == name => Some(1),
                    _ => None,
                })
                .unwrap_or(0)
        };
        if path.starts_with("/.store") {
            let bucket = spin_sdk::wit::wasi::keyvalue::store::open("default");
            let found = bucket.map(|b| b.get("health:probe").ok().flatten().is_some());
            let response = OutgoingResponse::new(Fields::new());
            let _ = response.set_status_code(200);
            let _ = out
                .set_with_body(response, format!("{found:?}").into_bytes())
                .await;
            return;
        }
        let mut seen = 0usize;
        if times("body") > 0 {
            seen += request.into_body().await.map_or(0, |b| b.len());
        }
        for name in SETTINGS.iter().cycle().take(times("get")) {
            seen += spin_sdk::variables::get(name).map_or(0, |v| v.len());
        }
        for _ in 0..times("all") {
            seen += spin_sdk::wit::wasi::config::store::get_all().map_or(0, |v| v.len());
        }
        for _ in 0..times("rand") {
            seen += wasi::random::random::get_random_bytes(16).len();
        }
        for _ in 0..times("clock") {
            seen += wasi::clocks::wall_clock::now().nanoseconds as usize;
        }
        for _ in 0..times("log") {
            println!(
                r#"{{"ts":"2026-01-01T00:00:00Z","level":"warn","event":"auth_failed","request_id":"0123456789abcdef0123456789abcdef","reason":"wrong_secret","signed":false,"status":401}}"#
            );
        }
        for _ in 0..times("chain") {
            let request = Request::post("http://bridge-store.spin.internal/.store", Vec::new());
            if let Ok(r) = send::<_, spin_sdk::http::Response>(request).await {
                seen += r.into_body().len();
            }
        }
        for _ in 0..times("kv") {
            if let Ok(b) = spin_sdk::wit::wasi::keyvalue::store::open("default") {
                seen += b.get("health:probe").ok().flatten().map_or(0, |v| v.len());
            }
        }
        let count = if times("headers") > 0 { 8 } else { 1 };
        let fields: Vec<(String, Vec<u8>)> = HEADERS[..count]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let response = OutgoingResponse::new(Fields::from_list(&fields).expect("valid headers"));
        let _ = response.set_status_code(200);
        let body = format!(r#"{{"status":"ok","seen":{seen}}}"#);
        let _ = out.set_with_body(response, body.into_bytes()).await;
    }
}
