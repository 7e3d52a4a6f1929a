//! Audit events (contract section 4): one JSON line each, secrets masked by key at any depth
//! and any case, and every configured secret's value scrubbed from the finished line.

use crate::config::Level;
use crate::secret::{Secret, Use};
use crate::time::Now;
use serde_json::{Map, Value};

/// Key fragments that mark a value as secret, matched case-insensitively anywhere in a key.
const SECRET_KEY_PARTS: &[&str] = &[
    "secret",
    "password",
    "token",
    "key",
    "otp",
    "signature",
    "authorization",
];

/// What replaces a secret.
pub const MASK: &str = "***";

/// One audit event before rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Severity.
    pub level: Level,
    /// One of the contract's event names.
    pub name: &'static str,
    /// The event's own fields.
    pub fields: Map<String, Value>,
}

impl Event {
    /// An event with no fields yet.
    pub fn new(level: Level, name: &'static str) -> Event {
        Event {
            level,
            name,
            fields: Map::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.fields.insert(key.to_string(), value.into());
        self
    }
}

/// A rendered line and the stream it belongs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `true` for stderr (errors), `false` for stdout.
    pub stderr: bool,
    /// One JSON object, no newline.
    pub text: String,
}

/// Who and when, shared by every event of a request.
#[derive(Debug, Clone)]
pub struct Context {
    /// The host's clock.
    pub now: Now,
    /// The response's `x-request-id`.
    pub request_id: String,
    /// The client address, when the host supplies a trustworthy one.
    pub client_addr: Option<String>,
}

/// Renders an event as one masked, redacted JSON line.
pub fn render(event: &Event, ctx: &Context, secrets: &[&Secret]) -> LogLine {
    let mut line = Map::new();
    line.insert("ts".into(), ctx.now.rfc3339().into());
    line.insert("level".into(), event.level.as_str().into());
    line.insert("event".into(), event.name.into());
    line.insert("request_id".into(), ctx.request_id.clone().into());
    line.insert(
        "client_addr".into(),
        ctx.client_addr.clone().map_or(Value::Null, Value::String),
    );
    for (k, v) in &event.fields {
        if !line.contains_key(k) {
            line.insert(k.clone(), v.clone());
        }
    }
    let mut value = Value::Object(line);
    mask(&mut value);
    LogLine {
        stderr: event.level == Level::Error,
        text: redact(&value.to_string(), secrets),
    }
}

/// Whether a key names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|p| k.contains(p))
}

/// Replaces the value of every secret-named key, at any depth, with `"***"`.
pub fn mask(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) {
                    *v = Value::String(MASK.into());
                } else {
                    mask(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// Replaces every occurrence of a secret's value, raw or JSON-escaped, with `***`.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        let raw = String::from_utf8_lossy(secret.expose_for(Use::Redaction)).into_owned();
        if raw.is_empty() {
            continue;
        }
        let escaped = Value::String(raw.clone()).to_string();
        let escaped = &escaped[1..escaped.len() - 1];
        for form in [escaped, raw.as_str()] {
            if out.contains(form) {
                out = out.replace(form, MASK);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context {
            now: Now(1_700_000_000_000_000),
            request_id: "r1".into(),
            client_addr: Some("203.0.113.7".into()),
        }
    }

    #[test]
    fn line_has_the_contract_fields() {
        let e = Event::new(Level::Info, "order_placed").with("pair", "XBTUSD");
        let line = render(&e, &ctx(), &[]);
        assert!(!line.stderr);
        let v: Value = serde_json::from_str(&line.text).unwrap();
        assert_eq!(v["ts"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["event"], "order_placed");
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["client_addr"], "203.0.113.7");
        assert_eq!(v["pair"], "XBTUSD");
        assert!(render(&Event::new(Level::Error, "order_pending"), &ctx(), &[]).stderr);
    }

    #[test]
    fn masks_secret_keys_at_any_depth_and_case() {
        let mut v = json!({
            "Secret": "a", "nested": {"API_KEY": "b", "list": [{"otp": "c"}, {"Authorization": "d"}]},
            "x_signature": "e", "PassWord": "f", "token": {"deep": "g"}, "kraken_api_secret": "h",
            "pair": "XBTUSD"
        });
        mask(&mut v);
        let text = v.to_string();
        for leaked in [
            "\"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\"", "\"f\"", "\"g\"", "\"h\"",
        ] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert_eq!(v["pair"], "XBTUSD");
        assert_eq!(v["nested"]["list"][0]["otp"], MASK);
    }

    #[test]
    fn redacts_secret_values_inside_other_strings() {
        let s = Secret::new("s3cr3t\"quote");
        let e = Event::new(Level::Warn, "alert_rejected")
            .with("reason", "field value was s3cr3t\"quote and more")
            .with("comment", "xs3cr3t\"quotex");
        let line = render(&e, &ctx(), &[&s]);
        assert!(!line.text.contains("s3cr3t"), "{}", line.text);
        assert!(serde_json::from_str::<Value>(&line.text).is_ok());
    }
}
