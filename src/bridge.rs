//! The request handler as a state machine with no I/O.
//!
//! [`handle`] takes a request, the settings and the host's facts (clock, request id, client
//! address) and returns a [`Step`]: either the finished response with its audit lines, or a
//! Kraken [`Call`] for the adapter to send and a [`Pending`] to resume with what came back.
//! The adapter loops until it gets [`Step::Done`]; a [`Step::Answer`] on the way is the
//! response to send at once, while store writes that the answer does not need go on. The webhook path reads in contract order:
//! route, size, content type, configuration, authenticate, parse, validate, plan, sign, send,
//! outcome.

use crate::alert::{self, Alert, MAX_BODY_BYTES};
use crate::audit::Level;
use crate::audit::{self, Event, LogLine};
use crate::auth;
use crate::config::Config;
use crate::idempotency::DedupeKey;
use crate::kraken::reply::Transport;
use crate::kraken::request::Call;
use crate::network;
use crate::notify::{self, Notice};
pub use crate::outcome::Pending;
use crate::reject::{AuthFailure, Reject};
use crate::response::Response;
use crate::route::{route, Route};
use crate::store::{StoreOp, StoreReply};
use crate::time::Now;
use serde_json::{json, Value};

/// An incoming request as the adapter read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method, upper-case.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, or its first `MAX_BODY_BYTES + 1` bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the host tells the core about itself and this request.
#[derive(Debug, Clone)]
pub struct Host {
    /// The wall clock, strictly increasing within an instance.
    pub now: Now,
    /// A fresh id for `x-request-id` and the audit lines.
    pub request_id: String,
    /// The client address, when the host supplies a trustworthy one.
    pub client_addr: Option<String>,
    /// `"spin"` or `"wasi"`.
    pub flavour: &'static str,
    /// The state store's name, or `None` in the portable flavour.
    pub state_store: Option<&'static str>,
    /// Asks the state store for one key, the refused Kraken keys' record
    /// ([`crate::refused_keys::KEY`]), within a bounded time, for `/health`: `Ok` with how
    /// the store is reached and the record's value, or why it did not answer. `None`: not
    /// asked (no store, or the core's own tests).
    pub store_probe: Option<StoreProbe>,
}

/// `/health`'s store probe: how the store is reached (`"bounded"`, `"direct"`) and the
/// value of [`crate::refused_keys::KEY`], or why the store did not answer.
pub type StoreProbe = fn() -> Result<(&'static str, Option<Vec<u8>>), String>;

/// The next thing the adapter must do.
#[derive(Debug)]
#[must_use]
pub enum Step {
    /// Send the response and write the audit lines (unless a [`Step::Answer`] already
    /// did: then the same response comes back here once the store writes after it are
    /// done), then post the notices.
    Done(Done),
    /// Send this response and write its audit lines now, then hand back
    /// [`Input::Answered`]: the store writes that follow cannot delay the answer.
    Answer(Done, Box<Pending>),
    /// Send the Kraken call (within its `timeout_ms`), then hand back [`Input::Kraken`].
    Call(Call, Box<Pending>),
    /// Perform the store operation, then hand back [`Input::Store`].
    Store(StoreOp, Box<Pending>),
    /// Wait this many milliseconds, then hand back [`Input::Waited`].
    Wait(u64, Box<Pending>),
}

/// What the adapter hands back to [`Pending::resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The outcome of a [`Step::Call`].
    Kraken(Transport),
    /// The outcome of a [`Step::Store`].
    Store(StoreReply),
    /// A [`Step::Wait`] is over.
    Waited,
    /// The response of a [`Step::Answer`] has gone.
    Answered,
}

/// A finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The response.
    pub response: Response,
    /// Audit lines, already filtered by `log_level`, masked and redacted.
    pub log: Vec<LogLine>,
    /// Notifications to post once the response has gone (`notify_url`), in order.
    pub notices: Vec<Notice>,
}

/// Everything a request carries from step to step.
#[derive(Debug)]
pub(crate) struct Cx {
    pub(crate) config: Config,
    pub(crate) host: Host,
    /// The request's `Origin` when `cors_allowed_origins` lists it.
    pub(crate) cors_origin: Option<String>,
}

impl Cx {
    fn audit(&self) -> audit::Context {
        audit::Context {
            now: self.host.now,
            request_id: self.host.request_id.clone(),
            client_addr: self.host.client_addr.clone(),
        }
    }

    pub(crate) fn finish(&self, response: Response, events: Vec<Event>) -> Step {
        Step::Done(self.done(response, events))
    }

    /// The response with its audit lines and notices.
    pub(crate) fn done(&self, response: Response, events: Vec<Event>) -> Done {
        let secrets: Vec<_> = self.config.secrets().collect();
        let ctx = self.audit();
        let mut log = Vec::new();
        let mut notices = Vec::new();
        for event in &events {
            // Every event of an account-addressed alert names the account (contract 2.7);
            // the default account's events go as they are.
            let named;
            let event = match &self.config.account {
                Some(name) => {
                    named = event.clone().with("account", name.as_str());
                    &named
                }
                None => event,
            };
            let line = audit::render(event, &ctx, &secrets);
            if let Some(target) = &self.config.notify {
                notices.extend(notify::notice(
                    target,
                    event,
                    &line,
                    &ctx,
                    self.config.log_level,
                ));
            }
            if event.level >= self.config.log_level {
                log.push(line);
            }
        }
        // A configured secret never leaves in a response, even inside another string.
        let body = audit::redact(&String::from_utf8_lossy(&response.body), &secrets);
        let mut response = Response {
            body: body.into_bytes(),
            ..response
        };
        if let Some(origin) = &self.cors_origin {
            response = response
                .with_header("access-control-allow-origin", origin.clone())
                .with_header("vary", "Origin");
        }
        Done {
            response,
            log,
            notices,
        }
    }

    pub(crate) fn reject(&self, reject: Reject, event: Option<Event>) -> Step {
        let response = Response::reject(&reject, self.config.environment, &self.host.request_id);
        let event = event.or_else(|| {
            reject.event().map(|name| {
                let level = match reject {
                    Reject::Misconfigured => Level::Error,
                    _ => Level::Warn,
                };
                Event::new(level, name)
                    .with("status", reject.status())
                    .with("error", reject.code())
            })
        });
        self.finish(response, event.into_iter().collect())
    }
}

/// Where the settings come from.
enum Settings<'a> {
    /// Already read and parsed (the core's tests, the benchmark, the fuzzer).
    Parsed(Box<Config>),
    /// The host's settings source, read on demand, each name at most once.
    Lookup(Memo<'a>),
}

impl Settings<'_> {
    /// The settings a request needs before it is authenticated; for a request to a named
    /// account, `kraken_accounts` as well.
    fn front(&self, accounts: bool) -> Config {
        match (self, accounts) {
            (Settings::Parsed(c), false) => c.as_ref().clone().only_front(),
            (Settings::Parsed(c), true) => c.as_ref().clone().only_front_with_accounts(),
            (Settings::Lookup(m), false) => Config::front(|n| m.get(n)),
            (Settings::Lookup(m), true) => Config::front_with_accounts(|n| m.get(n)),
        }
    }

    /// Every setting.
    fn full(self) -> Config {
        match self {
            Settings::Parsed(c) => *c,
            Settings::Lookup(m) => Config::from_lookup(|n| m.get(n)),
        }
    }
}

/// A settings source that reads each name once (a Spin variable is a host call).
struct Memo<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    seen: std::cell::RefCell<Vec<(String, Option<String>)>>,
}

impl Memo<'_> {
    fn get(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.seen.borrow().iter().find(|(n, _)| n == name) {
            return v.clone();
        }
        let value = (self.lookup)(name);
        self.seen
            .borrow_mut()
            .push((name.to_string(), value.clone()));
        value
    }
}

/// Handles a request up to its first Kraken call or its response, with every setting
/// already parsed.
pub fn handle(config: Config, host: Host, request: Request) -> Step {
    dispatch(Settings::Parsed(Box::new(config)), host, request)
}

/// [`handle`], reading settings from the host's source only as the request needs them: a
/// request refused before authentication reads the [`FRONT_SETTINGS`] alone.
///
/// [`FRONT_SETTINGS`]: crate::config::FRONT_SETTINGS
pub fn handle_with(lookup: &dyn Fn(&str) -> Option<String>, host: Host, request: Request) -> Step {
    let memo = Memo {
        lookup,
        seen: Default::default(),
    };
    dispatch(Settings::Lookup(memo), host, request)
}

fn dispatch(settings: Settings<'_>, host: Host, request: Request) -> Step {
    let route = route(&request.method, &request.path);
    // `/health` and `/config` report every setting; anything else starts with the few it
    // needs before authentication.
    let (config, rest) = match route {
        Ok(Route::Health | Route::Config) => (settings.full(), None),
        Ok(Route::AccountWebhook) => (settings.front(true), Some(settings)),
        _ => (settings.front(false), Some(settings)),
    };
    let cors_origin = request
        .header("origin")
        .map(str::to_ascii_lowercase)
        .filter(|o| config.cors_allowed_origins.contains(o));
    let mut cx = Cx {
        config,
        host,
        cors_origin,
    };
    // Where the client address comes from: the proxy's header when one is configured,
    // otherwise the host's own (Spin's `spin-client-addr`; none in the portable flavour).
    let client = match &cx.config.client_ip_header {
        Some(name) => {
            let ip = request.header(name).and_then(network::parse_client_addr);
            cx.host.client_addr = ip.map(|ip| ip.to_string());
            ip
        }
        None => cx
            .host
            .client_addr
            .as_deref()
            .and_then(network::parse_client_addr),
    };
    if request.method == "OPTIONS" && cx.cors_origin.is_some() {
        if let Err(Reject::MethodNotAllowed { allow }) = route {
            return preflight(&cx, allow);
        }
    }
    let route = match route {
        Err(reject) => return cx.reject(reject, None),
        Ok(route) => route,
    };
    // The allow-list comes before anything else; an unparseable list denies everything but
    // `/health`, which says what is wrong.
    let list_broken = cx
        .config
        .problems
        .iter()
        .any(|p| p.setting == "allowed_ips");
    let allowed = network::is_allowed(&cx.config.allowed_ips, client) && !list_broken;
    let health_despite_broken_list = list_broken && route == Route::Health;
    if !(allowed || health_despite_broken_list) {
        let event = Event::new(Level::Warn, "ip_denied").with("trusted_address", client.is_some());
        return cx.reject(Reject::Forbidden, Some(event));
    }
    match (route, rest) {
        (Route::Health, _) => health(&cx, !skips_store(&request.path)),
        (Route::Config, _) => effective_config(&cx),
        (Route::Webhook, Some(rest)) => webhook(cx, &request, rest, None),
        (Route::AccountWebhook, Some(rest)) => {
            let account = crate::route::account_in(&request.path).unwrap_or_default();
            webhook(cx, &request, rest, Some(account))
        }
        (Route::Webhook | Route::AccountWebhook, None) => {
            unreachable!("a webhook starts with the front settings")
        }
    }
}

/// A CORS preflight from an allowed origin.
fn preflight(cx: &Cx, allow: &'static str) -> Step {
    let response = Response::json(200, &json!({}), &cx.host.request_id)
        .with_header("access-control-allow-methods", allow)
        .with_header("access-control-allow-headers", "content-type, x-signature")
        .with_header("access-control-max-age", "600");
    cx.finish(response, Vec::new())
}

/// `GET /health?store=skip`: the configuration only, without asking the store (for a
/// liveness probe: restarting an instance does not bring a shared store back).
fn skips_store(path_and_query: &str) -> bool {
    path_and_query
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p == "store=skip"))
}

fn health(cx: &Cx, ask_store: bool) -> Step {
    let c = &cx.config;
    // A store that does not answer makes every alert answer 503: a readiness probe takes
    // such an instance out of rotation.
    let store = cx
        .host
        .store_probe
        .filter(|_| ask_store)
        .map(|probe| probe());
    let status_text = match (&store, c.is_usable()) {
        (_, false) => "misconfigured",
        (Some(Err(_)), true) => "store_unavailable",
        _ => "ok",
    };
    let mut body = json!({
        "status": status_text,
        "version": env!("CARGO_PKG_VERSION"),
        "flavour": cx.host.flavour,
        "trading_enabled": c.trading_enabled,
        "dry_run": c.dry_run,
        "state_store": cx.host.state_store,
        "kraken_keys": c.kraken_key_count(),
    });
    // Keys Kraken refused lately, as alerts recorded them in the store: by account.
    let refused = match &store {
        Some(Ok((_, value))) => crate::refused_keys::fresh(
            crate::refused_keys::decode(value.as_deref()),
            cx.host.now.secs(),
        ),
        _ => Vec::new(),
    };
    let refused_of = |account: Option<&str>| -> Vec<Value> {
        refused
            .iter()
            .filter(|e| e.account.as_deref() == account)
            .map(|e| json!({"key": e.key, "at": crate::time::Now(e.at * 1_000_000).rfc3339()}))
            .collect()
    };
    let own = refused_of(None);
    if !own.is_empty() {
        body["kraken_keys_refused"] = Value::from(own);
    }
    if !c.accounts.is_empty() {
        body["accounts"] = accounts_health(c, &refused_of);
    }
    match &store {
        Some(Ok((reached, _))) => body["store"] = json!({ "status": "ok", "calls": reached }),
        Some(Err(why)) => body["store"] = json!({ "status": "unavailable", "reason": why }),
        None => {}
    }
    let status = if status_text == "ok" {
        200
    } else {
        if !c.is_usable() {
            body["problems"] = serde_json::to_value(&c.problems).expect("problems serialise");
        }
        503
    };
    cx.finish(
        Response::json(status, &body, &cx.host.request_id),
        Vec::new(),
    )
}

/// Each named account as `/health` shows it: its name, whether an alert to it can trade
/// (the whole configuration usable and nothing of its own wrong), why not, its key count,
/// its switches and the keys Kraken refused lately (`refused_of`). Never a secret.
fn accounts_health(c: &Config, refused_of: &dyn Fn(Option<&str>) -> Vec<Value>) -> Value {
    let list: Vec<Value> = c
        .accounts
        .iter()
        .map(|a| {
            let name = a.account.as_deref().unwrap_or_default();
            let own: Vec<_> = c
                .problems
                .iter()
                .filter(|p| p.account.as_deref() == Some(name))
                .collect();
            let mut entry = json!({
                "name": name,
                "usable": c.is_usable(),
                "kraken_keys": a.kraken_key_count(),
                "trading_enabled": a.trading_enabled,
                "dry_run": a.dry_run,
            });
            if !own.is_empty() {
                entry["problems"] = serde_json::to_value(&own).expect("problems serialise");
            }
            let refused = refused_of(Some(name));
            if !refused.is_empty() {
                entry["kraken_keys_refused"] = Value::from(refused);
            }
            entry
        })
        .collect();
    Value::from(list)
}

/// `position_reserve` as `/config` shows it: `["XBT=0.5", ...]`.
fn reserve_shown(reserve: &[(String, rust_decimal::Decimal)]) -> Vec<String> {
    reserve.iter().map(|(a, v)| format!("{a}={v}")).collect()
}

fn effective_config(cx: &Cx) -> Step {
    let c = &cx.config;
    if c.environment != crate::config::Environment::Development {
        return cx.reject(Reject::NotFound, None);
    }
    let shown = |s: &Option<crate::secret::Secret>| match s {
        Some(_) => Value::from(audit::MASK),
        None => Value::Null,
    };
    let mut settings = json!({
        "webhook_secret": shown(&c.webhook_secret),
        "webhook_secret_previous": shown(&c.webhook_secret_previous),
        "kraken_api_key": shown(&c.kraken_api_key),
        "kraken_api_secret": shown(&c.kraken_api_secret),
        "kraken_otp": shown(&c.kraken_otp),
        "kraken_api_keys": if c.kraken_more_keys.is_empty() { Value::Null } else { Value::from(audit::MASK) },
        "kraken_keys": c.kraken_key_count(),
        "kraken_api_url": c.kraken_api_url,
        "environment": c.environment,
        "trading_enabled": c.trading_enabled,
        "dry_run": c.dry_run,
        "require_timestamp": c.require_timestamp,
        "rate_limit_per_minute": c.rate_limit_per_minute,
        "replay_window_seconds": c.replay_window_seconds,
        "dedupe_window_seconds": c.dedupe_window_seconds,
        "state_max_keys": c.state_max_keys,
        "log_level": c.log_level,
        "allowed_symbols": c.allowed_symbols,
        "symbol_map": c.symbol_map.iter().map(|(a, b)| format!("{a}={b}")).collect::<Vec<_>>(),
        "max_order_value": c.max_order_value.map(|v| v.to_string()),
        "position_reserve": reserve_shown(&c.position_reserve),
        "position_negative": c.position_negative,
        "max_position_value": c.max_position_value.map(|v| v.to_string()),
        "allowed_ips": !c.allowed_ips.is_empty(),
        "client_ip_header": c.client_ip_header,
        "cors_allowed_origins": c.cors_allowed_origins,
        "notify_url": shown(&c.notify.as_ref().map(|n| n.url.clone())),
        "notify_format": c.notify.as_ref().map(|n| n.format),
        "notify_chat_id": c.notify.as_ref().and_then(|n| n.chat_id.clone()),
    });
    settings["kraken_accounts"] = if c.accounts.is_empty() {
        Value::Null
    } else {
        Value::from(audit::MASK)
    };
    // Each account: its name, key count and what it sets itself; its secrets as `"***"`.
    let accounts: Vec<Value> = c
        .accounts
        .iter()
        .map(|a| {
            json!({
                "name": a.account,
                "webhook_secret": shown(&a.webhook_secret),
                "webhook_secret_previous": shown(&a.webhook_secret_previous),
                "kraken_keys": a.kraken_key_count(),
                "trading_enabled": a.trading_enabled,
                "dry_run": a.dry_run,
                "allowed_symbols": a.allowed_symbols,
                "max_order_value": a.max_order_value.map(|v| v.to_string()),
                "position_reserve": reserve_shown(&a.position_reserve),
                "position_negative": a.position_negative,
                "max_position_value": a.max_position_value.map(|v| v.to_string()),
                "rate_limit_per_minute": a.rate_limit_per_minute,
            })
        })
        .collect();
    settings["accounts"] = Value::from(accounts);
    settings["problems"] = serde_json::to_value(&c.problems).expect("problems serialise");
    cx.finish(
        Response::json(200, &settings, &cx.host.request_id),
        Vec::new(),
    )
}

/// Whether the content type is one TradingView or a relay sends: JSON, plain text or none.
fn acceptable_content_type(value: Option<&str>) -> bool {
    let Some(value) = value else { return true };
    let mime = value.split(';').next().unwrap_or_default().trim();
    mime.is_empty()
        || mime.eq_ignore_ascii_case("application/json")
        || mime.eq_ignore_ascii_case("text/plain")
}

/// What an alert to an account that does not exist is checked against: never a match (a
/// request that sends it is refused all the same), so that such an alert takes the path and
/// the time of a wrong secret, and its answer is a wrong secret's.
const UNKNOWN_ACCOUNT_STAND_IN: &str = "tv-kraken-bridge/no-such-account/stand-in-secret";

/// `POST /webhook` (`account` `None`) or `POST /webhook/{account}`.
fn webhook(mut cx: Cx, request: &Request, settings: Settings<'_>, account: Option<&str>) -> Step {
    if request.body.len() > MAX_BODY_BYTES {
        return cx.reject(Reject::PayloadTooLarge, None);
    }
    if !acceptable_content_type(request.header("content-type")) {
        return cx.reject(Reject::UnsupportedMediaType, None);
    }
    // The webhook secrets themselves must be usable to authenticate anything.
    if !cx.config.is_usable() {
        return misconfigured(&cx);
    }

    // Authenticate before anything else is looked at, with the addressed account's own
    // secrets only.
    let stand_in = crate::secret::Secret::new(UNKNOWN_ACCOUNT_STAND_IN);
    let holder = match account {
        None => Some(&cx.config),
        Some(name) => cx.config.account_named(name),
    };
    let unknown = holder.is_none();
    let secrets: Vec<_> = match holder {
        Some(c) => [&c.webhook_secret, &c.webhook_secret_previous]
            .into_iter()
            .flatten()
            .collect(),
        None => vec![&stand_in],
    };
    let object = alert::parse_object(&request.body);
    let credential = match request.header("x-signature") {
        Some(sig) => auth::verify_signature(sig, &request.body, &secrets),
        None => match &object {
            None => Err(AuthFailure::UnreadableBody),
            Some(o) => auth::verify_body_secret(o.secret(), &secrets),
        },
    };
    let signed = request.header("x-signature").is_some();
    let credential = match credential {
        Ok(_) if unknown => Err(if signed {
            AuthFailure::BadSignature
        } else {
            AuthFailure::WrongSecret
        }),
        other => other,
    };
    let credential = match credential {
        Ok(c) => c,
        Err(failure) => {
            let mut event = Event::new(Level::Warn, "auth_failed")
                .with("reason", failure.as_str())
                .with("signed", signed);
            if let Some(name) = account {
                // The name only when it is one (a path segment is the caller's text).
                if crate::account::is_valid_name(name) {
                    event = event.with("account", name);
                }
                event = event.with("account_known", !unknown);
            }
            return cx.reject(Reject::Unauthorized(failure), Some(event));
        }
    };

    // Authenticated: every other setting now (an account's laid over the top level's), and
    // the alert goes no further while any of them is unusable.
    cx.config = settings.full();
    if let Some(name) = account {
        match cx.config.for_account(name) {
            Some(c) => cx.config = c,
            // Named when the front settings were read, gone now: the settings changed.
            None => return misconfigured(&cx),
        }
    }
    if !cx.config.is_usable() {
        return misconfigured(&cx);
    }
    let Some(object) = object else {
        return cx.reject(Reject::MalformedJson, None);
    };
    let alert = match Alert::from_object(&object) {
        Ok(a) => a,
        Err(e) => return rejected_alert(&cx, e),
    };
    if cx.config.require_timestamp && alert.timestamp.is_none() {
        let e = crate::reject::FieldError::new("timestamp", "required (require_timestamp is set)");
        return rejected_alert(&cx, e);
    }
    if let Some(ts) = alert.timestamp {
        let age = cx.host.now.secs() as i64 - ts;
        if age.unsigned_abs() > cx.config.replay_window_seconds {
            let event = Event::new(Level::Warn, "stale").with("age_seconds", age);
            return cx.reject(Reject::Stale, Some(event));
        }
    }
    if !cx.config.trading_enabled {
        return cx.reject(Reject::TradingDisabled, None);
    }
    if let Err(reject) = crate::plan::precheck(&alert) {
        return match reject {
            Reject::InvalidAlert(e) => rejected_alert(&cx, e),
            other => cx.reject(other, None),
        };
    }
    let key = DedupeKey::new(alert.id.as_deref(), &request.body).in_account(account);
    Pending::start(cx, alert, credential, key)
}

/// `503 misconfigured`, with the settings at fault in the audit event.
fn misconfigured(cx: &Cx) -> Step {
    let problems: Vec<&str> = cx.config.problems.iter().map(|p| p.setting).collect();
    let event = Event::new(Level::Error, "config_error").with("problems", problems);
    cx.reject(Reject::Misconfigured, Some(event))
}

fn rejected_alert(cx: &Cx, e: crate::reject::FieldError) -> Step {
    let event = Event::new(Level::Warn, "alert_rejected")
        .with("status", 422)
        .with("field", e.field.clone())
        .with("reason", e.reason.clone());
    cx.reject(Reject::InvalidAlert(e), Some(event))
}

#[cfg(test)]
mod tests;
