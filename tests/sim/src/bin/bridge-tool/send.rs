//! `bridge-tool send` (`scripts/send`): sends one alert to a bridge, signed as a relay
//! would, or exactly as TradingView would.

use crate::curl::{self, Request};
use crate::{masked, pretty, sim_url, Args, EXIT_OK, EXIT_REFUSED};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::time::Duration;

const USAGE: &str = "\
usage: scripts/send [--url URL] [--account NAME] (--file PATH | --symbol SYMBOL
                     (--side buy|sell --volume V | --position TARGET)
                     [--order-type TYPE] [--price P] [--id ID] [--validate] [--timestamp])
                    [--tradingview] [--sim URL]

Sends one alert to the bridge and prints its status and answer. The webhook secret is read
from WEBHOOK_SECRET, never from a flag.

  --url URL        the bridge's webhook (default http://$BRIDGE_ADDR/webhook, BRIDGE_ADDR
                   default 127.0.0.1:3000, as scripts/up serves it)
  --account NAME   send to the named account: /NAME is added to the webhook URL
                   (WEBHOOK_SECRET is then that account's secret)
  --file PATH      the alert body, sent byte for byte (- reads stdin)
  --symbol, --side, --volume, --order-type, --price, --id
                   build the alert from these fields instead
  --position TARGET
                   a position alert instead of --side and --volume: \"action\": \"position\"
                   with the target holding of the pair's base asset (e.g. 0.5, or -0.5
                   for a short strategy)
  --validate       \"validate\": true (Kraken validates the order, nothing trades)
  --timestamp      \"timestamp\": now, in Unix seconds
  --tradingview    send what TradingView sends: no signature header, the secret in the
                   body as \"secret\" (replacing YOUR_WEBHOOK_SECRET in a --file, or added
                   to a JSON object that has none), content-type application/json when
                   the body is valid JSON and text/plain when it is not
                   (default: X-Signature, the hex HMAC-SHA256 of the raw body; no secret
                   in the body)
  --sim URL        for a bridge on this machine, the simulator whose order for the
                   answer's cl_ord_id is shown (default http://$SIM_ADDR, SIM_ADDR default
                   127.0.0.1:18081); nothing is shown when none answers

Exit status: 0 for a 2xx answer, 1 for any other answer, 2 when nothing was sent.";

/// The placeholder of the README's alert templates.
pub const PLACEHOLDER: &str = "YOUR_WEBHOOK_SECRET";

pub fn main(words: Vec<String>) -> Result<u8, String> {
    let args = Args::parse(
        words,
        &[
            "--url",
            "--file",
            "--symbol",
            "--side",
            "--volume",
            "--position",
            "--order-type",
            "--price",
            "--id",
            "--sim",
            "--account",
        ],
        &["--validate", "--timestamp", "--tradingview"],
    )?;
    if args.flag("--help") {
        println!("{USAGE}");
        return Ok(EXIT_OK);
    }
    if let Some(extra) = args.positional.first() {
        return Err(format!("unexpected argument {extra:?}\n{USAGE}"));
    }
    let secret = std::env::var("WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            "WEBHOOK_SECRET is not set: export the bridge's webhook secret \
             (scripts/up prints it inside its example alert)"
                .to_string()
        })?;
    let url = args.value("--url").map_or_else(
        || {
            let addr = std::env::var("BRIDGE_ADDR")
                .ok()
                .filter(|a| !a.trim().is_empty())
                .unwrap_or_else(|| "127.0.0.1:3000".into());
            format!("http://{}/webhook", addr.trim())
        },
        str::to_string,
    );
    let url = match args.value("--account") {
        None => url,
        Some(name) => {
            let valid = !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid {
                return Err(format!(
                    "--account {name:?}: an account name is 1 to 32 of a-z, 0-9, _ and -"
                ));
            }
            let (path, query) = url
                .split_once('?')
                .map_or((url.as_str(), None), |(p, q)| (p, Some(q)));
            let path = format!("{}/{name}", path.trim_end_matches('/'));
            match query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            }
        }
    };
    let tradingview = args.flag("--tradingview");
    let raw = match args.value("--file") {
        Some(path) => {
            if let Some(f) = FIELD_FLAGS.iter().find(|f| args.value(f).is_some()) {
                return Err(format!("{f} cannot be combined with --file"));
            }
            if args.flag("--validate") || args.flag("--timestamp") {
                return Err("--validate and --timestamp build an alert: not with --file".into());
            }
            read_file(path)?
        }
        None => alert_from_flags(&args)?.into_bytes(),
    };
    let prepared = prepare(&raw, &secret, tradingview);
    if let Some(warning) = &prepared.warning {
        eprintln!("warning: {warning}");
    }

    let mut req = Request::new("POST", &url)
        .header("Content-Type", prepared.content_type)
        .body(&prepared.body)
        .timeout(Duration::from_secs(30));
    if let Some(sig) = &prepared.signature {
        req = req.header("X-Signature", sig);
    }
    println!(
        "POST {url} ({}, {}, {} bytes)",
        if tradingview {
            "as TradingView: secret in the body, no signature"
        } else {
            "signed: X-Signature"
        },
        prepared.content_type,
        prepared.body.len()
    );
    let answer = curl::send(&req).map_err(|e| format!("no answer from the bridge: {e}"))?;
    println!("HTTP {}", answer.status);
    let json = answer.json();
    match &json {
        Some(v) => println!("{}", pretty(&masked(v))),
        None => println!("{}", answer.text()),
    }
    if curl::is_loopback(&url) {
        if let Some(cl) = json.as_ref().and_then(|v| v["cl_ord_id"].as_str()) {
            show_sim_order(&sim_url(args.value("--sim")), cl);
        }
    }
    Ok(if (200..300).contains(&answer.status) {
        EXIT_OK
    } else {
        EXIT_REFUSED
    })
}

/// The options that build an alert field by field.
const FIELD_FLAGS: [&str; 7] = [
    "--symbol",
    "--side",
    "--volume",
    "--position",
    "--order-type",
    "--price",
    "--id",
];

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
    }
}

/// The alert the field options describe, as compact JSON (no secret).
pub fn alert_from_flags(args: &Args) -> Result<String, String> {
    let mut alert = Map::new();
    for (flag, field) in [
        ("--id", "id"),
        ("--symbol", "symbol"),
        ("--side", "side"),
        ("--order-type", "order_type"),
        ("--volume", "volume"),
        ("--price", "price"),
        ("--position", "position"),
    ] {
        if let Some(v) = args.value(flag) {
            alert.insert(field.into(), json!(v));
        }
    }
    let needs: &[&str] = if alert.contains_key("position") {
        alert.insert("action".into(), json!("position"));
        &["symbol"]
    } else {
        &["symbol", "side", "volume"]
    };
    for needed in needs {
        if !alert.contains_key(*needed) {
            return Err(format!(
                "--{needed} is needed (or --file with a whole alert)\n{USAGE}"
            ));
        }
    }
    if args.flag("--timestamp") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        alert.insert("timestamp".into(), json!(now));
    }
    if args.flag("--validate") {
        alert.insert("validate".into(), json!(true));
    }
    Ok(Value::Object(alert).to_string())
}

/// What goes on the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct Prepared {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// The `X-Signature` value (signed mode only).
    pub signature: Option<String>,
    /// Something the operator should know about the body.
    pub warning: Option<String>,
}

/// Signed mode: `body` unchanged, with its signature. TradingView mode: the secret put in
/// the body ([`with_body_secret`]), no signature. Either way the content type is the one
/// TradingView would choose: `application/json` for valid JSON, `text/plain` otherwise.
pub fn prepare(body: &[u8], secret: &str, tradingview: bool) -> Prepared {
    let (body, signature, warning) = if tradingview {
        let (body, warning) = with_body_secret(body, secret);
        (body, None, warning)
    } else {
        let warning = body
            .windows(PLACEHOLDER.len())
            .any(|w| w == PLACEHOLDER.as_bytes())
            .then(|| {
                format!(
                    "the body carries the {PLACEHOLDER} placeholder, sent as it is: \
                     a signed alert needs no secret (--tradingview puts the real one in)"
                )
            });
        (body.to_vec(), Some(sign_hex(secret, body)), warning)
    };
    let content_type = if serde_json::from_slice::<Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain"
    };
    Prepared {
        body,
        content_type,
        signature,
        warning,
    }
}

/// Lowercase hex of HMAC-SHA256(secret, body): the bridge's `X-Signature`.
pub fn sign_hex(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The body TradingView would send for this alert message: every `YOUR_WEBHOOK_SECRET`
/// replaced by the secret; or, without a placeholder, a JSON object without `secret` gets
/// `"secret":…` as its first member (the rest of the text unchanged). Anything else is sent
/// as it is, with a warning when it carries no secret the bridge could accept.
pub fn with_body_secret(body: &[u8], secret: &str) -> (Vec<u8>, Option<String>) {
    let quoted = serde_json::to_string(secret).expect("a string serializes");
    let inner = &quoted[1..quoted.len() - 1];
    let placeholder = PLACEHOLDER.as_bytes();
    if body.windows(placeholder.len()).any(|w| w == placeholder) {
        let mut out = Vec::with_capacity(body.len() + inner.len());
        let mut i = 0;
        while i < body.len() {
            if body[i..].starts_with(placeholder) {
                out.extend_from_slice(inner.as_bytes());
                i += placeholder.len();
            } else {
                out.push(body[i]);
                i += 1;
            }
        }
        return (out, None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if !map.contains_key("secret") => {
            let open = body
                .iter()
                .position(|b| *b == b'{')
                .expect("a JSON object has a brace");
            let mut out = body[..=open].to_vec();
            out.extend_from_slice(b"\"secret\":");
            out.extend_from_slice(quoted.as_bytes());
            if !map.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(&body[open + 1..]);
            (out, None)
        }
        Ok(Value::Object(_)) => (body.to_vec(), None),
        _ => (
            body.to_vec(),
            Some(format!(
                "the body is not a JSON object and has no {PLACEHOLDER} placeholder: \
                 sent unchanged, without the secret"
            )),
        ),
    }
}

/// Prints the simulator's order for `cl_ord_id`, if a simulator answers at `sim`.
fn show_sim_order(sim: &str, cl_ord_id: &str) {
    let url = format!("{sim}/_sim/orders");
    let req = Request::new("GET", &url)
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(1));
    let Ok(answer) = curl::send(&req) else {
        return;
    };
    let Some(Value::Array(orders)) = answer.json() else {
        return;
    };
    let found: Vec<Value> = orders
        .into_iter()
        .filter(|o| o["cl_ord_id"].as_str() == Some(cl_ord_id))
        .collect();
    match found.as_slice() {
        [] => println!("simulator at {sim}: no order with cl_ord_id {cl_ord_id}"),
        [one] => println!("simulator order at {sim}:\n{}", pretty(&order_view(one))),
        many => println!(
            "simulator at {sim}: {} orders with cl_ord_id {cl_ord_id}:\n{}",
            many.len(),
            pretty(&Value::Array(many.iter().map(order_view).collect()))
        ),
    }
}

/// What matters of a booked order: its id, state, fill, and the parameters that reached
/// the exchange (credentials masked). `scripts/sim orders` shows the whole record.
pub fn order_view(order: &Value) -> Value {
    let mut view = Map::new();
    for key in [
        "txid",
        "status",
        "descr_order",
        "cl_ord_id",
        "vol_exec",
        "avg_price",
        "cost",
        "fee",
        "reason",
        "params",
    ] {
        match order.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                view.insert(key.into(), masked(v));
            }
        }
    }
    Value::Object(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-webhook-secret-0123456789abcdef";

    #[test]
    fn signature_is_hmac_sha256_hex_of_the_raw_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = b"{\"symbol\":\"XBTUSD\"}\n";
        let p = prepare(body, SECRET, false);
        assert_eq!(p.body, body);
        assert_eq!(
            p.signature.as_deref(),
            Some(sign_hex(SECRET, body).as_str())
        );
        assert_eq!(p.content_type, "application/json");
        assert!(!String::from_utf8_lossy(&p.body).contains(SECRET));
        assert_eq!(p.warning, None);
    }

    #[test]
    fn tradingview_mode_puts_the_secret_in_the_body_and_signs_nothing() {
        let p = prepare(br#"{"symbol":"XBTUSD","side":"buy"}"#, SECRET, true);
        assert_eq!(p.signature, None);
        assert_eq!(p.content_type, "application/json");
        assert_eq!(
            String::from_utf8(p.body).unwrap(),
            format!(r#"{{"secret":"{SECRET}","symbol":"XBTUSD","side":"buy"}}"#)
        );
        let (body, w) = with_body_secret(b"  {}", SECRET);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!(r#"  {{"secret":"{SECRET}"}}"#)
        );
        assert_eq!(w, None);
    }

    #[test]
    fn tradingview_mode_fills_the_placeholder_everywhere() {
        let template = b"{\"secret\":\"YOUR_WEBHOOK_SECRET\",\"volume\":NaN}";
        let p = prepare(template, SECRET, true);
        assert_eq!(
            String::from_utf8(p.body).unwrap(),
            format!("{{\"secret\":\"{SECRET}\",\"volume\":NaN}}")
        );
        // Not valid JSON: TradingView sends it as text/plain.
        assert_eq!(p.content_type, "text/plain");
        // A secret that needs JSON escaping stays a valid JSON string.
        let (body, _) = with_body_secret(br#"{"secret":"YOUR_WEBHOOK_SECRET"}"#, "a\"b");
        assert_eq!(body, br#"{"secret":"a\"b"}"#);
    }

    #[test]
    fn other_bodies_go_unchanged() {
        let (body, w) = with_body_secret(br#"{"secret":"mine","side":"buy"}"#, SECRET);
        assert_eq!(body, br#"{"secret":"mine","side":"buy"}"#);
        assert_eq!(w, None);
        let (body, w) = with_body_secret(b"buy XBTUSD", SECRET);
        assert_eq!(body, b"buy XBTUSD");
        assert!(w.unwrap().contains("not a JSON object"));
        let p = prepare(b"buy XBTUSD", SECRET, false);
        assert_eq!(p.content_type, "text/plain");
        assert!(p.signature.is_some());
        let p = prepare(br#"{"secret":"YOUR_WEBHOOK_SECRET"}"#, SECRET, false);
        assert!(p.warning.unwrap().contains("placeholder"));
    }

    /// The alert `words` describe: its JSON, or the tool's refusal.
    fn alert_of(words: &[&str]) -> Result<Value, String> {
        let args = Args::parse(
            words.iter().map(|w| w.to_string()).collect(),
            &FIELD_FLAGS,
            &["--validate", "--timestamp"],
        )
        .unwrap();
        alert_from_flags(&args).map(|text| serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn alerts_from_flags() {
        assert_eq!(
            alert_of(&[
                "--symbol",
                "XBTUSD",
                "--side",
                "buy",
                "--volume",
                "0.001",
                "--order-type",
                "limit",
                "--price",
                "30000",
                "--id",
                "t-1",
                "--validate",
            ])
            .unwrap(),
            json!({"id": "t-1", "symbol": "XBTUSD", "side": "buy", "order_type": "limit",
                   "volume": "0.001", "price": "30000", "validate": true})
        );
        let refused = alert_of(&["--symbol", "XBTUSD", "--side", "buy"]).unwrap_err();
        assert!(refused.contains("--volume"), "{refused}");
        assert_eq!(
            alert_of(&["--symbol", "BTCUSD", "--position", "-0.25", "--id", "p-1"]).unwrap(),
            json!({"id": "p-1", "symbol": "BTCUSD", "action": "position", "position": "-0.25"})
        );
        let refused = alert_of(&["--position", "0.5"]).unwrap_err();
        assert!(refused.contains("--symbol"), "{refused}");
    }
}
