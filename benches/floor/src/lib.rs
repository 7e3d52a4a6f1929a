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

#[cfg(not(feature = "io"))]
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
        let authentic = !secret.is_empty()
            && body
                .windows(needle.len())
                .any(|w| w == needle.as_bytes());
        if !authentic {
            println!(r#"{{"event":"auth_failed","level":"warn","reason":"wrong_secret"}}"#);
            return Ok(answer(401, r#"{"error":"unauthorized"}"#));
        }
        let base = std::env::var("KRAKEN_API_URL").unwrap_or_default();
        let pairs: Response =
            send(Request::get(format!("{base}/0/public/AssetPairs?pair=XBTUSD"))).await?;
        let ticker: Response =
            send(Request::get(format!("{base}/0/public/Ticker?pair=XXBTZUSD"))).await?;
        let order = Request::post(
            format!("{base}/0/private/AddOrder"),
            "nonce=1&ordertype=market&type=buy&volume=0.001&pair=XXBTZUSD&validate=true",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header("api-key", std::env::var("KRAKEN_API_KEY").unwrap_or_default())
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
