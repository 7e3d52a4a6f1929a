//! Notifications (contract section 3: `notify_url`, `notify_format`, `notify_chat_id`): each
//! order outcome posted to the operator's chat webhook, after the answer.
//!
//! The core decides what is sent and in which shape; the adapter sends it once the response
//! has gone, within [`NOTIFY_TIMEOUT_MS`], and writes [`delivery_line`]'s `notify_failed` line
//! when the receiver fails, refuses or does not answer. A notification never changes the
//! answer, and its text comes from the audit line, already masked and redacted: it carries no
//! secret, and `notify_url` is itself one of the secrets redacted everywhere.

use crate::audit::Level;
use crate::audit::{self, Context, Event, LogLine};
use crate::kraken::reply::Transport;
use crate::kraken::request::Call;
use crate::secret::{Secret, Use};
use crate::time::Now;
use serde_json::{json, Map, Value};

/// How long the adapter waits for the receiver (connect, send, answer). The answer has
/// already gone by then: this only bounds how long the instance lives on.
pub const NOTIFY_TIMEOUT_MS: u64 = 2_000;

/// The longest text sent: Discord refuses more than 2,000 characters, Telegram 4,096.
pub const MAX_TEXT_CHARS: usize = 1_900;

/// The audit events that are order outcomes, and so are notified: placed (or validated, for
/// a dry run), refused by the bridge or by Kraken, pending, cancelled, already in position. Every one of them
/// follows authentication: an unauthenticated caller can never make the bridge post.
pub const NOTIFIED_EVENTS: &[&str] = &[
    "order_placed",
    "order_validated",
    "order_rejected",
    "order_pending",
    "orders_cancelled",
    "in_position",
    "alert_rejected",
    "stale",
    "trading_disabled",
    "rate_limited",
];

/// `notify_format`: the shape of the posted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The audit line itself, as one JSON object (the default).
    Json,
    /// A Discord webhook: `{"content": text}`.
    Discord,
    /// A Slack incoming webhook: `{"text": text}`.
    Slack,
    /// Telegram's bot API `sendMessage`: `{"chat_id": .., "text": text}`.
    Telegram,
}

impl Format {
    /// The setting's value for this shape.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Discord => "discord",
            Format::Slack => "slack",
            Format::Telegram => "telegram",
        }
    }

    /// Parses `notify_format`.
    pub fn parse(value: &str) -> Option<Format> {
        match value.trim().to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "discord" => Some(Format::Discord),
            "slack" => Some(Format::Slack),
            "telegram" => Some(Format::Telegram),
            _ => None,
        }
    }
}

/// The notification settings, present when `notify_url` is set and every one of them parses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The receiver's URL: a secret.
    pub url: Secret,
    /// The message shape.
    pub format: Format,
    /// The Telegram chat, with [`Format::Telegram`].
    pub chat_id: Option<String>,
}

/// Checks a `notify_url`: an `http://` or `https://` URL with a host and a path, as the
/// adapter sends it ([`crate::network::split_url`]), without whitespace.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    match crate::network::split_url(url) {
        Some(_) if !url.contains(char::is_whitespace) => Ok(()),
        _ => Err("must be an http:// or https:// URL with a host and a path"),
    }
}

/// One notification for the adapter to post after the answer.
#[derive(Clone)]
pub struct Notice {
    /// The POST to the receiver (a JSON body; `timeout_ms` is [`NOTIFY_TIMEOUT_MS`]).
    pub call: Call,
    /// The event notified, for the `notify_failed` line.
    pub event: &'static str,
    /// The message's shape.
    pub format: Format,
    ctx: Context,
    /// `notify_url`, so a failure line can never carry it.
    url: Secret,
    /// Whether `log_level` lets a `notify_failed` warning through.
    log_failures: bool,
    /// The named account whose alert this is, for the `notify_failed` line.
    account: Option<String>,
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notice")
            .field("event", &self.event)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Notice {
    fn eq(&self, other: &Notice) -> bool {
        self.event == other.event
            && self.call.body == other.call.body
            && self.call.headers == other.call.headers
    }
}

impl Eq for Notice {}

/// The notification for `event`, when it is an order outcome and a target is configured.
/// `line` is the event's audit line, already masked and redacted.
pub fn notice(
    target: &Target,
    event: &Event,
    line: &LogLine,
    ctx: &Context,
    log_level: Level,
) -> Option<Notice> {
    if !NOTIFIED_EVENTS.contains(&event.name) {
        return None;
    }
    let chat = |object: Map<String, Value>| match target.format {
        Format::Discord => json!({ "content": text(&object) }),
        Format::Slack => json!({ "text": text(&object) }),
        _ => json!({
            "chat_id": target.chat_id.clone().unwrap_or_default(),
            "text": text(&object),
        }),
    };
    let body = match target.format {
        // The line itself, as written to the log.
        Format::Json => line.text.clone().into_bytes(),
        _ => chat(serde_json::from_str(&line.text).ok()?)
            .to_string()
            .into_bytes(),
    };
    let url = String::from_utf8_lossy(target.url.expose_for(Use::Notify)).into_owned();
    Some(Notice {
        call: Call {
            method: "POST",
            url,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
            kraken_method: "notify",
            timeout_ms: NOTIFY_TIMEOUT_MS,
        },
        event: event.name,
        format: target.format,
        ctx: ctx.clone(),
        url: target.url.clone(),
        log_failures: Level::Warn >= log_level,
        account: event
            .fields
            .get("account")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The chat text: the outcome first, then its details, e.g.
/// `order_placed: buy 0.001 XBTUSD market · txid OABC… · cl_ord_id … · request_id …`; a dry
/// run adds `validate (dry run)`.
pub fn text(line: &Map<String, Value>) -> String {
    let field = |k: &str| match line.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | Some(Value::Bool(false)) | None => None,
        // A dry run says so; a real order need not.
        Some(Value::Bool(true)) if k == "validate" => Some("(dry run)".into()),
        // `txid` is a list of strings.
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Some(v) => Some(v.to_string()),
    };
    let mut head = field("event").unwrap_or_else(|| "order".into());
    let order: Vec<String> = ["side", "volume", "pair", "order_type"]
        .iter()
        .filter_map(|k| field(k))
        .collect();
    if !order.is_empty() {
        head = format!("{head}: {}", order.join(" "));
    }
    if let Some(price) = field("price") {
        head = format!("{head} @ {price}");
    }
    let mut parts = vec![head];
    for k in [
        "account",
        "txid",
        "count",
        "position",
        "target",
        "kraken_error",
        "error",
        "field",
        "reason",
        "status",
        "validate",
        "cl_ord_id",
        "request_id",
    ] {
        if let Some(v) = field(k) {
            parts.push(format!("{k} {v}"));
        }
    }
    let text = parts.join(" · ");
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The audit line for a notification's delivery: `None` when the receiver took it (a 2xx),
/// otherwise a `notify_failed` warning naming the event, and the receiver's status or
/// whether it failed or did not answer, stamped `now`. Never the URL, never the receiver's
/// answer.
pub fn delivery_line(notice: &Notice, transport: &Transport, now: Now) -> Option<LogLine> {
    let failure = Event::new(Level::Warn, "notify_failed")
        .with("notified_event", notice.event)
        .with("format", notice.format.name());
    let failure = match transport {
        _ if !notice.log_failures => return None,
        Transport::Reply { status, .. } if (200..300).contains(status) => return None,
        Transport::Reply { status, .. } => failure
            .with("reason", "receiver_refused")
            .with("status", *status),
        Transport::NotSent(_) => failure.with("reason", "unreachable"),
        Transport::Lost(_) => failure.with("reason", "no_answer"),
    };
    let failure = match &notice.account {
        Some(account) => failure.with("account", account.as_str()),
        None => failure,
    };
    let ctx = Context {
        now,
        ..notice.ctx.clone()
    };
    Some(audit::render(&failure, &ctx, &[&notice.url]))
}

#[cfg(test)]
mod tests;
