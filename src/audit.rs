//! Audit events (contract section 4): one JSON line each, secrets masked by key at any depth
//! and any case, and every configured secret's value scrubbed from the finished line.

use crate::secret::{Secret, Use};
use crate::time::Now;
use serde::Serialize;
use serde_json::{Map, Value};

/// `log_level`: the least severe audit level written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Everything.
    Debug,
    /// Normal outcomes and above (the default).
    Info,
    /// Rejections and refusals and above.
    Warn,
    /// Errors only.
    Error,
}

impl Level {
    /// The name used in audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

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

/// The audit lines' schema version, in every line as `"schema"`. It changes only when a
/// field is removed or renamed or changes meaning; new events and new fields keep it.
pub const SCHEMA: u32 = 1;

/// Every event the bridge writes (OBSERVABILITY.md documents each, field by field).
pub const EVENTS: &[&str] = &[
    "auth_failed",
    "ip_denied",
    "stale",
    "alert_rejected",
    "alert_duplicate",
    "rate_limited",
    "trading_disabled",
    "order_placed",
    "order_validated",
    "order_rejected",
    "order_pending",
    "orders_cancelled",
    "in_position",
    "config_error",
    "notify_failed",
];

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
    line.insert("schema".into(), SCHEMA.into());
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

/// Checks audit lines against OBSERVABILITY.md, for the tests of every module that writes
/// them.
#[cfg(test)]
pub(crate) mod documented {
    use super::{EVENTS, SCHEMA};
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::OnceLock;

    const PAGE: &str = include_str!("../OBSERVABILITY.md");

    /// What the page says: the fields of every line, and each event's own fields and example.
    pub(crate) struct Page {
        pub(crate) common: BTreeSet<String>,
        pub(crate) events: BTreeMap<String, (BTreeSet<String>, Vec<String>)>,
    }

    /// The backticked names in a table row's first cell.
    fn names(row: &str) -> Vec<String> {
        let first = row
            .trim()
            .trim_start_matches('|')
            .split('|')
            .next()
            .unwrap_or("");
        first
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    pub(crate) fn page() -> &'static Page {
        static PAGE_PARSED: OnceLock<Page> = OnceLock::new();
        PAGE_PARSED.get_or_init(|| {
            let mut common = BTreeSet::new();
            let mut events: BTreeMap<String, (BTreeSet<String>, Vec<String>)> = BTreeMap::new();
            let mut current: Option<String> = None;
            let mut in_common = false;
            let mut in_json = false;
            for line in PAGE.lines() {
                if let Some(h) = line.strip_prefix("### `") {
                    current = Some(h.trim_end_matches('`').to_string());
                    in_common = false;
                    events.entry(current.clone().unwrap()).or_default();
                } else if line.starts_with("## ") {
                    current = None;
                } else if line.starts_with("Fields in every line") {
                    in_common = true;
                } else if line.starts_with("Order fields") {
                    in_common = false;
                } else if line == "```json" {
                    in_json = true;
                } else if line == "```" {
                    in_json = false;
                } else if in_json {
                    if let Some(e) = &current {
                        events.get_mut(e).unwrap().1.push(line.to_string());
                    }
                } else if line.starts_with('|') && !line.starts_with("|---") {
                    let found = names(line);
                    if in_common {
                        common.extend(found);
                    } else if let Some(e) = &current {
                        events.get_mut(e).unwrap().0.extend(found);
                    }
                }
            }
            Page { common, events }
        })
    }

    /// Panics unless `line` is one JSON object of a documented event, with the schema
    /// version and only the fields the page lists for it.
    pub(crate) fn check(line: &str) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let event = v["event"]
            .as_str()
            .unwrap_or_else(|| panic!("no event: {line}"));
        assert!(EVENTS.contains(&event), "{event} is not in audit::EVENTS");
        assert_eq!(v["schema"], SCHEMA, "{line}");
        let page = page();
        let (fields, _) = page
            .events
            .get(event)
            .unwrap_or_else(|| panic!("OBSERVABILITY.md has no section for {event}"));
        for key in v.as_object().unwrap().keys() {
            assert!(
                page.common.contains(key) || fields.contains(key),
                "OBSERVABILITY.md does not list field {key} of {event}: {line}"
            );
        }
    }
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
    fn every_line_carries_the_schema_version() {
        let line = render(&Event::new(Level::Warn, "stale"), &ctx(), &[]);
        let v: Value = serde_json::from_str(&line.text).unwrap();
        assert_eq!(v["schema"], 1);
        documented::check(&line.text);
    }

    #[test]
    fn the_page_documents_every_event_with_an_example() {
        let page = documented::page();
        let sections: Vec<&str> = page.events.keys().map(String::as_str).collect();
        let mut events = EVENTS.to_vec();
        events.sort_unstable();
        assert_eq!(
            sections, events,
            "OBSERVABILITY.md sections vs audit::EVENTS"
        );
        for (event, (fields, examples)) in &page.events {
            assert!(!fields.is_empty(), "{event}: no field table");
            assert_eq!(examples.len(), 1, "{event}: one example line");
            documented::check(&examples[0]);
            let v: Value = serde_json::from_str(&examples[0]).unwrap();
            assert_eq!(v["event"], event.as_str());
        }
        for common in [
            "schema",
            "ts",
            "level",
            "event",
            "request_id",
            "client_addr",
        ] {
            assert!(page.common.contains(common), "{common}");
        }
    }

    #[test]
    fn the_check_can_fail() {
        let undocumented = r#"{"client_addr":null,"event":"stale","level":"warn","request_id":"r","schema":1,"ts":"t","surprise":1}"#;
        assert!(std::panic::catch_unwind(|| documented::check(undocumented)).is_err());
        let old =
            r#"{"client_addr":null,"event":"stale","level":"warn","request_id":"r","ts":"t"}"#;
        assert!(std::panic::catch_unwind(|| documented::check(old)).is_err());
        let unknown = r#"{"client_addr":null,"event":"order_teleported","level":"warn","request_id":"r","schema":1,"ts":"t"}"#;
        assert!(std::panic::catch_unwind(|| documented::check(unknown)).is_err());
    }

    /// Every event name the code writes is in [`EVENTS`]: the sources are scanned for
    /// `Level::X, "name"` and for the names `Reject::event` returns.
    #[test]
    fn every_event_the_code_writes_is_listed() {
        let sources = [
            include_str!("bridge.rs"),
            include_str!("outcome.rs"),
            include_str!("outcome/claim.rs"),
            include_str!("notify.rs"),
        ];
        let mut found = Vec::new();
        for src in sources {
            for part in src.split("Level::").skip(1) {
                let rest = part.trim_start_matches(char::is_alphabetic);
                if let Some(name) = rest.strip_prefix(", \"").and_then(|r| r.split('"').next()) {
                    found.push(name.to_string());
                }
            }
        }
        let reject = include_str!("reject.rs");
        let events_fn = reject.split("fn event(").nth(1).expect("Reject::event");
        let body = events_fn.split("\n    }").next().unwrap();
        for part in body.split("Some(\"").skip(1) {
            found.push(part.split('"').next().unwrap().to_string());
        }
        assert!(found.len() > 15, "the scan found too little: {found:?}");
        for name in &found {
            assert!(
                EVENTS.contains(&name.as_str()),
                "{name} is written but not in EVENTS"
            );
        }
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
