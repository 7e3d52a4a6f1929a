//! The hostile-input catalogue: named bad requests against the real Spin-flavour component,
//! each with its documented status, none reaching the exchange, none leaking a secret.

mod common;

use bytes::Bytes;
use common::*;
use tv_kraken_bridge::auth::sign_hex;

/// How a case authenticates.
#[derive(Clone, Copy)]
enum Auth {
    /// No signature; the body carries (or fails to carry) the secret.
    Body,
    /// `X-Signature` over the body with the webhook secret.
    Signed,
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    auth: Auth,
    status: u16,
    error: &'static str,
}

fn case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    auth: Auth,
    status: u16,
    error: &'static str,
) -> Case {
    Case {
        name,
        method: "POST",
        path: "/webhook",
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
        auth,
        status,
        error,
    }
}

fn with_header(mut c: Case, name: &'static str, value: impl Into<String>) -> Case {
    c.headers.retain(|(k, _)| *k != name);
    c.headers.push((name, value.into()));
    c
}

fn to(mut c: Case, method: &'static str, path: &'static str) -> Case {
    c.method = method;
    c.path = path;
    c
}

/// A valid alert with the body secret, with `extra` spliced in before the closing brace.
fn alert(extra: &str) -> String {
    format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","symbol":"XBTUSD","side":"buy","volume":"0.01"{extra}}}"#
    )
}

/// A valid alert without the secret (for signed cases), with `extra` spliced in.
fn unsigned(extra: &str) -> String {
    format!(r#"{{"symbol":"XBTUSD","side":"buy","volume":"0.01"{extra}}}"#)
}

fn minutes_ago(m: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now - m * 60).to_string()
}

fn catalogue() -> Vec<Case> {
    use Auth::*;
    let deep = format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","comment":{}1{}}}"#,
        "[".repeat(2000),
        "]".repeat(2000)
    );
    let deep_signed = format!(r#"{{"comment":{}1{}}}"#, "[".repeat(2000), "]".repeat(2000));
    let huge_digits = format!("1{}", "0".repeat(400));
    let mut invalid_utf8 = alert("").into_bytes();
    invalid_utf8.splice(20..20, [0xff, 0xfe]);
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend_from_slice(alert("").as_bytes());
    let short_secret = &WEBHOOK_SECRET[..WEBHOOK_SECRET.len() - 1];
    vec![
        // Broken JSON: unsigned, the secret cannot be read (401); signed, the body is malformed (400).
        case("empty body", "", Body, 401, "unauthorized"),
        case("empty body, signed", "", Signed, 400, "malformed_json"),
        case("whitespace only", "  \n\t ", Body, 401, "unauthorized"),
        case(
            "truncated object",
            alert("")[..40].to_string(),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "truncated object, signed",
            unsigned("")[..30].to_string(),
            Signed,
            400,
            "malformed_json",
        ),
        case("trailing comma", alert(","), Body, 401, "unauthorized"),
        case(
            "trailing garbage",
            format!("{} x", alert("")),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "two objects",
            format!("{}{}", alert(""), alert("")),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "top-level array, signed",
            "[1,2,3]",
            Signed,
            400,
            "malformed_json",
        ),
        case(
            "top-level string, signed",
            "\"order\"",
            Signed,
            400,
            "malformed_json",
        ),
        case(
            "top-level number, signed",
            "42",
            Signed,
            400,
            "malformed_json",
        ),
        case(
            "top-level null, signed",
            "null",
            Signed,
            400,
            "malformed_json",
        ),
        case(
            "duplicate secret key",
            format!(
                r#"{{"secret":"{WEBHOOK_SECRET}","secret":"{WEBHOOK_SECRET}","symbol":"XBTUSD","side":"buy","volume":"1"}}"#
            ),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "duplicate volume key, signed",
            unsigned(r#","volume":"100""#),
            Signed,
            400,
            "malformed_json",
        ),
        case("deep nesting", deep, Body, 401, "unauthorized"),
        case(
            "deep nesting, signed",
            deep_signed,
            Signed,
            400,
            "malformed_json",
        ),
        case(
            "NaN number, signed",
            unsigned(r#","price":NaN"#),
            Signed,
            400,
            "malformed_json",
        ),
        case(
            "Infinity number, signed",
            unsigned(r#","price":Infinity"#),
            Signed,
            400,
            "malformed_json",
        ),
        case(
            "invalid UTF-8",
            invalid_utf8.clone(),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "invalid UTF-8, signed",
            invalid_utf8,
            Signed,
            400,
            "malformed_json",
        ),
        case("byte-order mark", bom, Body, 401, "unauthorized"),
        // Numbers.
        case(
            "huge volume",
            alert("").replace(r#""0.01""#, &format!("\"{huge_digits}\"")),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "huge number literal",
            alert("").replace(r#""0.01""#, &huge_digits),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "exponent number",
            alert("").replace(r#""0.01""#, "1e-3"),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "exponent string",
            alert("").replace(r#""0.01""#, r#""1E2""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "NaN string",
            alert("").replace(r#""0.01""#, r#""NaN""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "Infinity string",
            alert("").replace(r#""0.01""#, r#""Infinity""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "negative volume",
            alert("").replace(r#""0.01""#, r#""-0.01""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "negative zero volume",
            alert("").replace(r#""0.01""#, r#""-0""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "zero volume",
            alert("").replace(r#""0.01""#, "0"),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "hex volume",
            alert("").replace(r#""0.01""#, r#""0x10""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "volume with comma",
            alert("").replace(r#""0.01""#, r#""0,01""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "zero limit price",
            alert(r#","order_type":"limit","price":"0""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "balance_percent over 100",
            alert("").replace(r#""volume":"0.01""#, r#""balance_percent":"100.5""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "two sizes",
            alert(r#","quote_volume":"10""#),
            Body,
            422,
            "invalid_alert",
        ),
        // Strings.
        case(
            "overlong id",
            alert(&format!(r#","id":"{}""#, "i".repeat(65))),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "id with slash",
            alert(r#","id":"a/b""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "overlong comment",
            alert(&format!(r#","comment":"{}""#, "c".repeat(257))),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "overlong symbol",
            alert("").replace("XBTUSD", &"X".repeat(33)),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "control character in comment",
            alert(r#","comment":"bell\u0007""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "NUL in id",
            alert(r#","id":"a\u0000b""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "object where a string belongs",
            alert(r#","comment":{"a":1}"#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "unknown field",
            alert(r#","qty":"1""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "secret-named unknown field",
            alert(r#","api_key":"x""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "wrong side",
            alert("").replace(r#""buy""#, r#""long""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "bad order type",
            alert(r#","order_type":"iceberg""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "bad action",
            alert(r#","action":"withdraw""#),
            Body,
            422,
            "invalid_alert",
        ),
        case(
            "garbage timestamp",
            alert(r#","timestamp":"yesterday""#),
            Body,
            422,
            "invalid_alert",
        ),
        // Secrets and signatures.
        case(
            "secret one byte short",
            alert("").replace(WEBHOOK_SECRET, short_secret),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "secret with trailing space",
            alert("").replace(WEBHOOK_SECRET, &format!("{WEBHOOK_SECRET} ")),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "secret in upper case",
            alert("").replace(WEBHOOK_SECRET, &WEBHOOK_SECRET.to_uppercase()),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "secret as a number",
            unsigned(r#","secret":12345"#),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "secret as an array",
            unsigned(&format!(r#","secret":["{WEBHOOK_SECRET}"]"#)),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "secret null",
            unsigned(r#","secret":null"#),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "secret nested",
            unsigned(&format!(r#","auth":{{"secret":"{WEBHOOK_SECRET}"}}"#)),
            Body,
            401,
            "unauthorized",
        ),
        case(
            "secret key in another case",
            unsigned(&format!(r#","Secret":"{WEBHOOK_SECRET}""#)),
            Body,
            401,
            "unauthorized",
        ),
        with_header(
            case(
                "signature of wrong length (63)",
                unsigned(""),
                Body,
                401,
                "unauthorized",
            ),
            "x-signature",
            "a".repeat(63),
        ),
        with_header(
            case(
                "signature of wrong length (65)",
                unsigned(""),
                Body,
                401,
                "unauthorized",
            ),
            "x-signature",
            "a".repeat(65),
        ),
        with_header(
            case("signature not hex", unsigned(""), Body, 401, "unauthorized"),
            "x-signature",
            "g".repeat(64),
        ),
        with_header(
            case(
                "signature with another prefix",
                unsigned(""),
                Body,
                401,
                "unauthorized",
            ),
            "x-signature",
            format!(
                "sha512={}",
                sign_hex(WEBHOOK_SECRET.as_bytes(), unsigned("").as_bytes())
            ),
        ),
        with_header(
            case("empty signature", alert(""), Body, 401, "unauthorized"),
            "x-signature",
            "",
        ),
        with_header(
            case(
                "signature with inner space",
                unsigned(""),
                Body,
                401,
                "unauthorized",
            ),
            "x-signature",
            format!(
                "sha256= {}",
                sign_hex(WEBHOOK_SECRET.as_bytes(), unsigned("").as_bytes())
            ),
        ),
        with_header(
            case(
                "signature under another key",
                unsigned(""),
                Body,
                401,
                "unauthorized",
            ),
            "x-signature",
            sign_hex(
                b"another-secret-of-32-bytes-or-more!",
                unsigned("").as_bytes(),
            ),
        ),
        with_header(
            case(
                "signature of another body",
                unsigned(r#","comment":"x""#),
                Body,
                401,
                "unauthorized",
            ),
            "x-signature",
            sign_hex(WEBHOOK_SECRET.as_bytes(), unsigned("").as_bytes()),
        ),
        with_header(
            case(
                "header injection in signature",
                unsigned(""),
                Body,
                401,
                "unauthorized",
            ),
            "x-signature",
            "abc\tcontent-type: text/html",
        ),
        to(
            case(
                "secret in the query string",
                unsigned(""),
                Body,
                401,
                "unauthorized",
            ),
            "POST",
            "/webhook?secret=e2e-webhook-secret-9f3b1c7d2a6e4f80",
        ),
        // Replays.
        case(
            "stale timestamp",
            alert(&format!(r#","timestamp":"{}""#, minutes_ago(60))),
            Body,
            401,
            "stale",
        ),
        case(
            "future timestamp",
            alert(&format!(r#","timestamp":"{}""#, minutes_ago(-60))),
            Body,
            401,
            "stale",
        ),
        // Sizes and content types.
        case(
            "17 KiB body",
            alert(&format!(r#","comment":"{}""#, "x".repeat(17 * 1024))),
            Body,
            413,
            "payload_too_large",
        ),
        case(
            "1 MiB body",
            "x".repeat(1 << 20),
            Body,
            413,
            "payload_too_large",
        ),
        with_header(
            case(
                "XML content type",
                alert(""),
                Body,
                415,
                "unsupported_media_type",
            ),
            "content-type",
            "application/xml",
        ),
        with_header(
            case(
                "form content type",
                alert(""),
                Body,
                415,
                "unsupported_media_type",
            ),
            "content-type",
            "application/x-www-form-urlencoded",
        ),
        with_header(
            case(
                "multipart content type",
                alert(""),
                Body,
                415,
                "unsupported_media_type",
            ),
            "content-type",
            "multipart/form-data; boundary=x",
        ),
        // Methods and paths.
        to(
            case("GET the webhook", "", Body, 405, "method_not_allowed"),
            "GET",
            "/webhook",
        ),
        to(
            case(
                "PUT the webhook",
                alert(""),
                Body,
                405,
                "method_not_allowed",
            ),
            "PUT",
            "/webhook",
        ),
        to(
            case("DELETE health", "", Body, 405, "method_not_allowed"),
            "DELETE",
            "/health",
        ),
        to(
            case("trailing slash", alert(""), Body, 404, "not_found"),
            "POST",
            "/webhook/",
        ),
        to(
            case("upper-case path", alert(""), Body, 404, "not_found"),
            "POST",
            "/WEBHOOK",
        ),
        to(
            case("dot-dot path", alert(""), Body, 404, "not_found"),
            "POST",
            "/webhook/../health",
        ),
        to(
            case("encoded dot-dot path", "", Body, 404, "not_found"),
            "GET",
            "/%2e%2e/config",
        ),
        to(
            case("config in production", "", Body, 404, "not_found"),
            "GET",
            "/config",
        ),
    ]
}

#[test]
fn hostile_requests_get_their_documented_status_and_change_nothing() {
    let sim = sim();
    let host = spin_host(&sim, &[]);
    let cases = catalogue();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for c in cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        let mut req = http::Request::builder().method(c.method).uri(c.path);
        for (k, v) in &c.headers {
            req = req.header(*k, v.as_str());
        }
        if let Auth::Signed = c.auth {
            req = req.header("x-signature", sign_hex(WEBHOOK_SECRET.as_bytes(), &c.body));
        }
        let ex = send(&host, req.body(Bytes::from(c.body)).unwrap());
        assert_eq!(ex.status, c.status, "{}: {ex}", c.name);
        assert_eq!(ex.json()["error"], c.error, "{}: {ex}", c.name);
        assert!(ex.outbound.is_empty(), "{}: the bridge called out", c.name);
        if c.name == "secret-named unknown field" {
            assert!(!ex.stdout.contains(r#""api_key":"x""#));
        }
    }
    assert!(
        sim.requests().is_empty(),
        "a hostile request reached the exchange"
    );
}

#[test]
fn hostile_configuration_accepts_nothing() {
    let sim = sim();
    for (settings, status) in [
        (vec![("webhook_secret", &WEBHOOK_SECRET[..31])], 503),
        (vec![("trading_enabled", "false")], 423),
        (vec![("trading_enabled", "flase")], 503),
        (vec![("kraken_api_secret", "not-base64!")], 503),
    ] {
        let host = spin_host(&sim, &settings);
        let body = alert("").replace(
            WEBHOOK_SECRET,
            settings
                .iter()
                .find(|(k, _)| *k == "webhook_secret")
                .map_or(WEBHOOK_SECRET, |(_, v)| v),
        );
        let ex = send(&host, post(body, &[]));
        assert_eq!(ex.status, status, "{settings:?}: {ex}");
    }
    assert!(sim.requests().is_empty());
}
