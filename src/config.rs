//! Settings (contract section 3), parsed once per request from a lookup function.
//!
//! The host adapter supplies the lookup (Spin variables, or environment variables in the
//! portable flavour); tests build a [`Config`] from an in-memory map. A value that does not
//! parse is never replaced by a silent default: it becomes a [`Problem`] that `/health`
//! reports and that stops every alert.

use crate::secret::Secret;
use base64::Engine as _;
use serde::Serialize;

/// Every setting name the bridge reads, in the order `/config` lists them.
pub const SETTINGS: &[&str] = &[
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

/// The settings a request reads before it is authenticated: the allow-list and CORS, the
/// webhook secrets, and how errors and audit lines are written. Everything else is read
/// only for an authenticated alert, `/health` and `/config`.
pub const FRONT_SETTINGS: &[&str] = &[
    "webhook_secret",
    "webhook_secret_previous",
    "environment",
    "log_level",
    "allowed_ips",
    "client_ip_header",
    "cors_allowed_origins",
];

/// Settings whose values are secrets: `/config` shows them as `"***"`.
pub const SECRET_SETTINGS: &[&str] = &[
    "webhook_secret",
    "webhook_secret_previous",
    "kraken_api_key",
    "kraken_api_secret",
    "kraken_otp",
    "kraken_api_keys",
    "notify_url",
    "kraken_accounts",
];

/// The minimum length of the webhook secret, in bytes (contract 2.1, item 5).
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 32;

/// The minimum length of every other secret, in bytes (issue: secrets that cannot be
/// masked).
///
/// A configured secret's value is masked wherever it appears in outgoing text, even inside
/// another string (contract 4). A short value also appears inside what the bridge itself
/// writes: a `kraken_otp` of `0` turned a `cl_ord_id`, a txid and the version into
/// `f***7a3…`, `OBZKKP-…***` and `***.1.***`. Masking less would let the value through;
/// masking as the contract says corrupts the identifiers an operator needs. So a secret
/// shorter than this is a configuration error: the bridge never uses it (no alert trades on
/// an unusable configuration), and, never used, it is not searched for in outgoing text.
/// At 12 bytes even a value of decimal digits (10^12 of them) appears by chance in about
/// one answer in 10^9 (an answer carries a few hundred characters); Kraken's own keys are 56
/// and 88 characters, and a key's 2FA password can be as long as the trader likes.
pub const MIN_SECRET_BYTES: usize = 12;

/// The most keys `kraken_api_keys` may add beside `kraken_api_key`.
pub const MAX_MORE_KEYS: usize = 15;

/// The Kraken origin used when `kraken_api_url` is unset.
pub const DEFAULT_KRAKEN_API_URL: &str = "https://api.kraken.com";

/// `environment`: how much detail error bodies carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Error bodies carry codes and field names only (the default).
    Production,
    /// Error bodies add a `detail` string; `/config` is served.
    Development,
}

pub use crate::audit::Level;

/// `position_negative`: what a position alert with a negative target does (contract 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionNegative {
    /// `422` on the target field (the default): a spot account cannot be short.
    Refuse,
    /// Hold nothing instead: a negative target is a target of zero.
    Flat,
}

/// A setting that is missing or does not parse. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The setting's name.
    pub setting: &'static str,
    /// The account whose setting it is (`kraken_accounts`); absent for the top level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// What is wrong with it.
    pub reason: String,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HMAC key and body secret.
    pub webhook_secret: Option<Secret>,
    /// Accepted as well, during rotation.
    pub webhook_secret_previous: Option<Secret>,
    /// Kraken public API key (`API-Key`).
    pub kraken_api_key: Option<Secret>,
    /// Kraken private key, base64 as Kraken issues it (checked to decode).
    pub kraken_api_secret: Option<Secret>,
    /// The key's static 2FA password.
    pub kraken_otp: Option<Secret>,
    /// Further keys of the same Kraken account (`kraken_api_keys`), `(api_key, api_secret)`:
    /// each with its own nonce sequence, so that simultaneous alerts spread over the keys
    /// refuse each other's nonces less often.
    pub kraken_more_keys: Vec<(Secret, Secret)>,
    /// Kraken origin, without a trailing slash.
    pub kraken_api_url: String,
    /// `production` or `development`.
    pub environment: Environment,
    /// The kill switch.
    pub trading_enabled: bool,
    /// Every order sent with `validate=true`.
    pub dry_run: bool,
    /// Kraken pairs alerts may trade; empty: any.
    pub allowed_symbols: Vec<String>,
    /// `TVSYMBOL=KRAKENPAIR` overrides.
    pub symbol_map: Vec<(String, String)>,
    /// Cap per order, in the quote currency.
    pub max_order_value: Option<rust_decimal::Decimal>,
    /// Holdings the bridge never sells (`position_reserve`): `(ASSET, amount)`, the asset
    /// upper-case as written (Kraken's id, the pair's display name or a synonym).
    pub position_reserve: Vec<(String, rust_decimal::Decimal)>,
    /// What a negative position target does (`position_negative`).
    pub position_negative: PositionNegative,
    /// Cap on a position alert's target, in the quote currency at the last trade.
    pub max_position_value: Option<rust_decimal::Decimal>,
    /// Addresses and CIDRs that may reach the bridge; empty: any.
    pub allowed_ips: Vec<crate::network::IpNet>,
    /// The header carrying the client address behind a proxy, lower-case.
    pub client_ip_header: Option<String>,
    /// Origins that get CORS headers.
    pub cors_allowed_origins: Vec<String>,
    /// Alerts without a `timestamp` are refused.
    pub require_timestamp: bool,
    /// Accepted alerts per minute.
    pub rate_limit_per_minute: u32,
    /// Seconds either side of the host clock an alert `timestamp` may be.
    pub replay_window_seconds: u64,
    /// How long a body-hash dedupe key is kept.
    pub dedupe_window_seconds: u64,
    /// The state store's key budget (`None`: no cap, as on SQLite and Redis). Fermyon
    /// Cloud caps a store at 1,024 keys.
    pub state_max_keys: Option<usize>,
    /// The least severe audit level written.
    pub log_level: Level,
    /// Where order outcomes are posted (`notify_url`, `notify_format`, `notify_chat_id`).
    pub notify: Option<crate::notify::Target>,
    /// Everything that is wrong; empty when the configuration is usable.
    pub problems: Vec<Problem>,
    /// The account this configuration is (`POST /webhook/{account}`); `None`: the default
    /// account, the top-level settings.
    pub account: Option<String>,
    /// The named accounts of `kraken_accounts`, each parsed as the top level's settings with
    /// the account's own laid over them (empty in an account's own configuration).
    pub accounts: Vec<Config>,
    /// Secrets of the rest of the bridge that an account's configuration redacts too.
    also_redact: Vec<Secret>,
}

impl Config {
    /// Parses every setting through `lookup`, which returns `None` for an unset name.
    /// An empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        Config::parse(&lookup, true)
    }

    /// [`from_lookup`](Self::from_lookup); `kraken_accounts` is read only when `accounts`.
    fn parse(lookup: &dyn Fn(&str) -> Option<String>, accounts: bool) -> Config {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();

        let webhook_secret = get("webhook_secret").map(Secret::new);
        match &webhook_secret {
            None => problems.push(problem("webhook_secret", "required")),
            Some(s) if !s.has_at_least(MIN_WEBHOOK_SECRET_BYTES) => problems.push(problem(
                "webhook_secret",
                "shorter than 32 bytes; generate one with scripts/gen-secret",
            )),
            Some(_) => {}
        }
        let webhook_secret_previous = get("webhook_secret_previous").map(Secret::new);
        if matches!(&webhook_secret_previous, Some(s) if !s.has_at_least(MIN_WEBHOOK_SECRET_BYTES))
        {
            problems.push(problem("webhook_secret_previous", "shorter than 32 bytes"));
        }

        let kraken_api_key = get("kraken_api_key").map(Secret::new);
        if kraken_api_key.is_none() {
            problems.push(problem("kraken_api_key", "required to trade"));
        }
        let kraken_api_secret = match get("kraken_api_secret") {
            None => {
                problems.push(problem("kraken_api_secret", "required to trade"));
                None
            }
            Some(b64) => {
                let decoded = base64::engine::general_purpose::STANDARD.decode(b64.trim());
                match decoded {
                    // Kept as issued (base64) so redaction finds the text an operator pasted;
                    // signing decodes it per call.
                    Ok(bytes) if !bytes.is_empty() => Some(Secret::new(b64.trim())),
                    _ => {
                        problems.push(problem("kraken_api_secret", "not valid base64"));
                        None
                    }
                }
            }
        };
        let kraken_otp = get("kraken_otp").map(Secret::new);
        let short = format!(
            "shorter than {MIN_SECRET_BYTES} bytes: too short to keep out of logs and answers"
        );
        let kraken_more_keys = match get("kraken_api_keys").map(|v| parse_more_keys(&v)) {
            None => Vec::new(),
            Some(Ok(keys)) => keys,
            Some(Err(reason)) => {
                problems.push(problem("kraken_api_keys", reason));
                Vec::new()
            }
        };
        if !kraken_more_keys.is_empty() && kraken_api_key.is_none() {
            problems.push(problem(
                "kraken_api_keys",
                "further keys need kraken_api_key and kraken_api_secret",
            ));
        }
        let main_key = kraken_api_key
            .as_ref()
            .map(|k| k.expose_for(crate::secret::Use::KrakenCredential));
        if kraken_more_keys
            .iter()
            .any(|(k, _)| Some(k.expose_for(crate::secret::Use::KrakenCredential)) == main_key)
        {
            problems.push(problem("kraken_api_keys", "lists kraken_api_key again"));
        }
        for (name, value) in [
            ("kraken_api_key", &kraken_api_key),
            ("kraken_api_secret", &kraken_api_secret),
            ("kraken_otp", &kraken_otp),
        ] {
            if matches!(value, Some(s) if !s.has_at_least(MIN_SECRET_BYTES)) {
                problems.push(problem(name, short.clone()));
            }
        }

        let kraken_api_url = match get("kraken_api_url") {
            None => DEFAULT_KRAKEN_API_URL.to_string(),
            Some(url) => match parse_origin(&url) {
                Ok(origin) => origin,
                Err(reason) => {
                    problems.push(problem("kraken_api_url", reason));
                    DEFAULT_KRAKEN_API_URL.to_string()
                }
            },
        };

        let environment = match get("environment").as_deref().map(str::trim) {
            None | Some("production") => Environment::Production,
            Some("development") => Environment::Development,
            Some(_) => {
                problems.push(problem(
                    "environment",
                    "must be `production` or `development`",
                ));
                Environment::Production
            }
        };

        // `None` when the value does not parse (and a problem is recorded).
        let mut flag = |name: &'static str, default: bool| match get(name) {
            None => Some(default),
            Some(v) => {
                let parsed = parse_bool(&v);
                if parsed.is_none() {
                    problems.push(problem(name, "must be `true` or `false`"));
                }
                parsed
            }
        };
        // An unparseable kill switch fails closed: no trading, and every order a dry run.
        let trading_enabled = flag("trading_enabled", true).unwrap_or(false);
        let dry_run = flag("dry_run", false).unwrap_or(true);
        // Unparseable: fail closed, every alert must carry a timestamp.
        let require_timestamp = flag("require_timestamp", false).unwrap_or(true);

        let mut number = |name: &'static str, default: u64, min: u64, max: u64| match get(name) {
            None => default,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    problems.push(problem(
                        name,
                        format!("must be a whole number from {min} to {max}"),
                    ));
                    default
                }
            },
        };
        let rate_limit_per_minute = number("rate_limit_per_minute", 60, 1, 100_000) as u32;
        let replay_window_seconds = number("replay_window_seconds", 300, 1, 86_400);
        let dedupe_window_seconds = number("dedupe_window_seconds", 60, 1, 86_400);
        // 0 or unset: no cap. Below 64 the budget would leave no room for the records.
        let state_max_keys = match number("state_max_keys", 0, 0, 100_000_000) {
            0 => None,
            n if n < 64 => {
                problems.push(problem(
                    "state_max_keys",
                    "must be 0 (no cap) or at least 64",
                ));
                None
            }
            n => Some(n as usize),
        };

        let log_level = match get("log_level").as_deref().map(str::trim) {
            None | Some("info") => Level::Info,
            Some("debug") => Level::Debug,
            Some("warn") => Level::Warn,
            Some("error") => Level::Error,
            Some(_) => {
                problems.push(problem(
                    "log_level",
                    "must be `debug`, `info`, `warn` or `error`",
                ));
                Level::Info
            }
        };

        let allowed_symbols: Vec<String> = get("allowed_symbols")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_uppercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let symbol_map = match get("symbol_map") {
            None => Vec::new(),
            Some(v) => crate::kraken::pairs::parse_symbol_map(&v).unwrap_or_else(|reason| {
                problems.push(problem("symbol_map", reason));
                Vec::new()
            }),
        };
        let max_order_value = positive(get("max_order_value"), "max_order_value", &mut problems);

        let position_reserve = match get("position_reserve") {
            None => Vec::new(),
            Some(v) => parse_reserve(&v).unwrap_or_else(|reason| {
                problems.push(problem("position_reserve", reason));
                Vec::new()
            }),
        };

        let position_negative = match get("position_negative").map(|v| v.to_ascii_lowercase()) {
            None => PositionNegative::Refuse,
            Some(v) if v == "refuse" => PositionNegative::Refuse,
            Some(v) if v == "flat" => PositionNegative::Flat,
            Some(_) => {
                problems.push(problem("position_negative", "must be `refuse` or `flat`"));
                PositionNegative::Refuse
            }
        };
        let max_position_value = positive(
            get("max_position_value"),
            "max_position_value",
            &mut problems,
        );

        let allowed_ips = match get("allowed_ips") {
            None => Vec::new(),
            Some(v) => crate::network::parse_allowed_ips(&v).unwrap_or_else(|reason| {
                problems.push(problem("allowed_ips", reason));
                Vec::new()
            }),
        };
        let client_ip_header = get("client_ip_header").and_then(|v| {
            crate::network::parse_header_name(&v)
                .map_err(|reason| problems.push(problem("client_ip_header", reason)))
                .ok()
        });
        let cors_allowed_origins = match get("cors_allowed_origins") {
            None => Vec::new(),
            Some(v) => crate::network::parse_origins(&v).unwrap_or_else(|reason| {
                problems.push(problem("cors_allowed_origins", reason));
                Vec::new()
            }),
        };

        let notify_format = match get("notify_format") {
            None => Some(crate::notify::Format::Json),
            Some(v) => crate::notify::Format::parse(&v).or_else(|| {
                problems.push(problem(
                    "notify_format",
                    "must be `json`, `discord`, `slack` or `telegram`",
                ));
                None
            }),
        };
        let notify_chat_id = get("notify_chat_id").map(|v| v.trim().to_string());
        let notify = match (get("notify_url"), notify_format) {
            (None, _) => None,
            (Some(url), format) => {
                let url = url.trim().to_string();
                if let Err(reason) = crate::notify::check_url(&url) {
                    problems.push(problem("notify_url", reason));
                } else if url.len() < MIN_SECRET_BYTES {
                    problems.push(problem("notify_url", short.clone()));
                }
                if format == Some(crate::notify::Format::Telegram) && notify_chat_id.is_none() {
                    problems.push(problem(
                        "notify_chat_id",
                        "required with notify_format=telegram",
                    ));
                }
                format.map(|format| crate::notify::Target {
                    url: Secret::new(url),
                    format,
                    chat_id: notify_chat_id,
                })
            }
        };

        let named = match get("kraken_accounts").filter(|_| accounts) {
            None => Ok(Vec::new()),
            Some(text) => crate::account::parse(&text),
        };
        let named = named.unwrap_or_else(|reason| {
            problems.push(problem("kraken_accounts", reason));
            Vec::new()
        });
        let mut accounts = Vec::new();
        for raw in named {
            let mut sub = Config::parse(&|n: &str| raw.lookup(n, lookup), false);
            sub.account = Some(raw.name.clone());
            sub.problems.retain(|p| raw.owns(p.setting));
            for p in &mut sub.problems {
                p.account = Some(raw.name.clone());
            }
            problems.extend(sub.problems.iter().cloned());
            accounts.push(sub);
        }
        // A leaked secret reaches one account: no two accounts share a webhook secret.
        let mut holders: Vec<(&Secret, Option<&str>)> = Vec::new();
        let own = [&webhook_secret, &webhook_secret_previous];
        for s in own.into_iter().flatten() {
            holders.push((s, None));
        }
        for a in &accounts {
            for s in [&a.webhook_secret, &a.webhook_secret_previous]
                .into_iter()
                .flatten()
            {
                holders.push((s, a.account.as_deref()));
            }
        }
        let mut shared = Vec::new();
        for (i, (s, who)) in holders.iter().enumerate() {
            let earlier = holders[..i].iter().find(|(t, by)| {
                by != who && t.matches(s.expose_for(crate::secret::Use::Redaction))
            });
            if let (Some((_, by)), Some(name)) = (earlier, who) {
                let other = by.map_or("the default account".to_string(), |b| {
                    format!("account {b}")
                });
                shared.push(Problem {
                    setting: "webhook_secret",
                    account: Some(name.to_string()),
                    reason: format!(
                        "the same as a webhook secret of {other}: each account needs its own"
                    ),
                });
            }
        }
        problems.extend(shared);

        Config {
            account: None,
            accounts,
            also_redact: Vec::new(),
            webhook_secret,
            webhook_secret_previous,
            kraken_api_key,
            kraken_api_secret,
            kraken_otp,
            kraken_more_keys,
            kraken_api_url,
            environment,
            trading_enabled,
            dry_run,
            allowed_symbols,
            symbol_map,
            max_order_value,
            position_reserve,
            position_negative,
            max_position_value,
            allowed_ips,
            client_ip_header,
            cors_allowed_origins,
            require_timestamp,
            rate_limit_per_minute,
            replay_window_seconds,
            dedupe_window_seconds,
            state_max_keys,
            log_level,
            notify,
            problems,
        }
    }

    /// Only the [`FRONT_SETTINGS`], for a request not yet authenticated: the other settings
    /// keep their defaults and their problems are not known yet.
    pub fn front(lookup: impl Fn(&str) -> Option<String>) -> Config {
        Config::parse(
            &|name| {
                if FRONT_SETTINGS.contains(&name) {
                    lookup(name)
                } else {
                    None
                }
            },
            false,
        )
        .only_front()
    }

    /// [`front`](Self::front) for a request to a named account: the [`FRONT_SETTINGS`] and
    /// `kraken_accounts`, whose accounts carry their webhook secrets.
    pub fn front_with_accounts(lookup: impl Fn(&str) -> Option<String>) -> Config {
        Config::parse(
            &|name| {
                if FRONT_SETTINGS.contains(&name) || name == "kraken_accounts" {
                    lookup(name)
                } else {
                    None
                }
            },
            true,
        )
        .only_front_with_accounts()
    }

    /// This configuration as a request not yet authenticated sees it: the problems of the
    /// [`FRONT_SETTINGS`] alone, and no notification target (only an authenticated alert's
    /// outcome is ever posted).
    pub fn only_front(mut self) -> Config {
        self.problems
            .retain(|p| p.account.is_none() && FRONT_SETTINGS.contains(&p.setting));
        self.notify = None;
        self.accounts.clear();
        self
    }

    /// [`only_front`](Self::only_front), keeping the accounts and every problem of
    /// `kraken_accounts` and of an account's own settings.
    pub fn only_front_with_accounts(mut self) -> Config {
        self.problems.retain(|p| {
            p.account.is_some()
                || p.setting == "kraken_accounts"
                || FRONT_SETTINGS.contains(&p.setting)
        });
        self.notify = None;
        for a in &mut self.accounts {
            a.notify = None;
        }
        self
    }

    /// Account `name`'s own configuration as parsed (its problems alone), or `None`.
    pub fn account_named(&self, name: &str) -> Option<&Config> {
        self.accounts
            .iter()
            .find(|a| a.account.as_deref() == Some(name))
    }

    /// The configuration of account `name`, or `None` when no account has that name: the
    /// account's settings laid over the top level's, every problem of the bridge (an alert
    /// to any account waits until the whole configuration is usable), and every secret of
    /// the bridge to redact.
    pub fn for_account(&self, name: &str) -> Option<Config> {
        let mut c = self.account_named(name)?.clone();
        c.problems = self.problems.clone();
        c.also_redact = self.secrets().cloned().collect();
        Some(c)
    }

    /// Whether alerts may be processed at all.
    pub fn is_usable(&self) -> bool {
        self.problems.is_empty()
    }

    /// Every configured secret, for redaction of outgoing text: all but those shorter than
    /// [`MIN_SECRET_BYTES`], which make the configuration unusable and are never used.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.own_secrets()
            .chain(self.notify.as_ref().map(|n| &n.url))
            .chain(self.accounts.iter().flat_map(|a| a.own_secrets()))
            .chain(self.also_redact.iter())
            .filter(|s| s.has_at_least(MIN_SECRET_BYTES))
    }

    /// This configuration's own secrets, its accounts' not included.
    fn own_secrets(&self) -> impl Iterator<Item = &Secret> {
        [
            &self.webhook_secret,
            &self.webhook_secret_previous,
            &self.kraken_api_key,
            &self.kraken_api_secret,
            &self.kraken_otp,
        ]
        .into_iter()
        .flatten()
        .chain(self.kraken_more_keys.iter().flat_map(|(k, s)| [k, s]))
    }
}

impl Config {
    /// How many Kraken keys the bridge may sign with: `kraken_api_key` and the further ones.
    pub fn kraken_key_count(&self) -> usize {
        usize::from(self.kraken_api_key.is_some()) + self.kraken_more_keys.len()
    }

    /// The key an alert whose order carries `cl_ord_id` signs with: spread evenly over the
    /// keys by the `cl_ord_id` (32 hex digits of a hash), so that simultaneous alerts share
    /// a key, and refuse each other's nonces, as seldom as chance allows, with no store call;
    /// every delivery of one alert signs with the same key.
    pub fn kraken_key_for(&self, cl_ord_id: &str) -> usize {
        let n = self.kraken_key_count().max(1);
        let h = cl_ord_id
            .get(..8)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        h as usize % n
    }

    /// Key `i` of [`kraken_key_count`](Self::kraken_key_count), `(api_key, api_secret)`:
    /// 0 is `kraken_api_key`, then `kraken_api_keys` in order.
    pub fn kraken_key(&self, i: usize) -> Option<(&Secret, &Secret)> {
        match i {
            0 => self
                .kraken_api_key
                .as_ref()
                .zip(self.kraken_api_secret.as_ref()),
            i => self.kraken_more_keys.get(i - 1).map(|(k, s)| (k, s)),
        }
    }
}

impl Config {
    /// The holding of `pair`'s base asset that the bridge never sells (`position_reserve`;
    /// zero when it names none).
    pub fn reserve_for(&self, pair: &crate::kraken::pairs::Pair) -> rust_decimal::Decimal {
        self.position_reserve
            .iter()
            .filter(|(asset, _)| pair.has_base(asset))
            .map(|(_, amount)| *amount)
            .max()
            .unwrap_or_default()
    }
}

/// An optional positive decimal setting: `None` when unset, and a problem (never a default)
/// when it does not parse.
fn positive(
    value: Option<String>,
    setting: &'static str,
    problems: &mut Vec<Problem>,
) -> Option<rust_decimal::Decimal> {
    let value = value?;
    match crate::decimal::Positive::parse(&value) {
        Ok(p) => Some(p.value()),
        Err(reason) => {
            problems.push(problem(setting, reason));
            None
        }
    }
}

/// `position_reserve`: a comma list of `ASSET=amount` (`XBT=0.5,ETH=2`), each asset once,
/// each amount a positive decimal.
fn parse_reserve(text: &str) -> Result<Vec<(String, rust_decimal::Decimal)>, String> {
    let mut out: Vec<(String, rust_decimal::Decimal)> = Vec::new();
    for (i, item) in text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let n = i + 1;
        let (asset, amount) = item
            .split_once('=')
            .ok_or_else(|| format!("item {n} is not ASSET=amount"))?;
        let asset = asset.trim().to_ascii_uppercase();
        let valid = !asset.is_empty()
            && asset.len() <= 16
            && asset.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(format!("item {n}: an asset is 1 to 16 letters and digits"));
        }
        let amount = crate::decimal::Positive::parse(amount.trim())
            .map_err(|reason| format!("item {n} ({asset}): {reason}"))?;
        if out.iter().any(|(a, _)| *a == asset) {
            return Err(format!("{asset} named twice"));
        }
        out.push((asset, amount.value()));
    }
    Ok(out)
}

/// `kraken_api_keys`: `[{"api_key":"...","api_secret":"..."}]`. The reason never carries a
/// value (only positions and rules).
fn parse_more_keys(text: &str) -> Result<Vec<(Secret, Secret)>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Key {
        api_key: String,
        api_secret: String,
    }
    // serde_json's own message could quote the text: only its position is kept.
    let keys: Vec<Key> = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a JSON list of {{\"api_key\",\"api_secret\"}} objects (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if keys.len() > MAX_MORE_KEYS {
        return Err(format!("more than {MAX_MORE_KEYS} keys"));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let n = i + 1;
        let (api_key, api_secret) = (key.api_key.trim(), key.api_secret.trim());
        if api_key.len() < MIN_SECRET_BYTES || api_secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "key {n}: shorter than {MIN_SECRET_BYTES} bytes: too short to keep out of logs and answers"
            ));
        }
        match base64::engine::general_purpose::STANDARD.decode(api_secret) {
            Ok(bytes) if !bytes.is_empty() => {}
            _ => return Err(format!("key {n}: api_secret is not valid base64")),
        }
        if !seen.insert(api_key.to_string()) {
            return Err(format!("key {n}: listed twice"));
        }
        out.push((Secret::new(api_key), Secret::new(api_secret)));
    }
    Ok(out)
}

fn problem(setting: &'static str, reason: impl Into<String>) -> Problem {
    Problem {
        setting,
        account: None,
        reason: reason.into(),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Accepts `scheme://host[:port]` with an optional trailing slash and nothing else.
fn parse_origin(url: &str) -> Result<String, &'static str> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// (http:// only for a local simulator)")?;
    let valid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if valid {
        Ok(url.to_string())
    } else {
        Err("must be an origin (scheme://host[:port]) with no path")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn lookup_from<'a>(
        pairs: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        move |name| map.get(name).map(|v| v.to_string())
    }

    const GOOD: &[(&str, &str)] = &[
        ("webhook_secret", "0123456789abcdef0123456789abcdef"),
        ("kraken_api_key", "kraken-api-key-0123"),
        (
            "kraken_api_secret",
            "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==",
        ),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Config {
        let mut all: Vec<(&str, &str)> = GOOD.to_vec();
        all.extend_from_slice(extra);
        Config::from_lookup(lookup_from(&all))
    }

    #[test]
    fn defaults() {
        let c = with(&[]);
        assert!(c.is_usable(), "{:?}", c.problems);
        assert_eq!(c.kraken_api_url, "https://api.kraken.com");
        assert_eq!(c.environment, Environment::Production);
        assert!(c.trading_enabled);
        assert!(!c.dry_run);
        assert_eq!(c.rate_limit_per_minute, 60);
        assert_eq!(c.replay_window_seconds, 300);
        assert_eq!(c.dedupe_window_seconds, 60);
        assert_eq!(c.log_level, Level::Info);
    }

    #[test]
    fn short_webhook_secret_is_a_problem() {
        let c = with(&[("webhook_secret", "0123456789abcdef0123456789abcde")]);
        assert!(!c.is_usable());
        assert_eq!(c.problems[0].setting, "webhook_secret");
        assert!(!c.problems[0].reason.contains("0123"));
    }

    #[test]
    fn missing_required_settings() {
        let c = Config::from_lookup(|_| None);
        let names: Vec<_> = c.problems.iter().map(|p| p.setting).collect();
        assert_eq!(
            names,
            ["webhook_secret", "kraken_api_key", "kraken_api_secret"]
        );
    }

    #[test]
    fn unparseable_values_are_problems_not_defaults() {
        for (name, value) in [
            ("trading_enabled", "yes please"),
            ("dry_run", "maybe"),
            ("environment", "staging"),
            ("log_level", "verbose"),
            ("rate_limit_per_minute", "-1"),
            ("dedupe_window_seconds", "1e3"),
            ("kraken_api_url", "https://api.kraken.com/0/private"),
            ("kraken_api_url", "ftp://x"),
            ("kraken_api_secret", "not base64!"),
            ("symbol_map", "BTCUSD"),
            ("max_order_value", "-5"),
            ("position_reserve", "XBT"),
            ("position_reserve", "XBT=-1"),
            ("position_reserve", "XBT=0"),
            ("position_reserve", "XBT=1,xbt=2"),
            ("position_reserve", "X B T=1"),
            ("position_reserve", "XBT=1e3"),
            ("position_negative", "short"),
            ("position_negative", "0"),
            ("max_position_value", "0"),
            ("max_position_value", "-100"),
            ("allowed_ips", "52.89.214.238/40"),
            ("client_ip_header", "x real ip"),
            ("cors_allowed_origins", "*"),
        ] {
            let c = with(&[(name, value)]);
            assert!(
                c.problems.iter().any(|p| p.setting == name),
                "{name}={value} should be a problem"
            );
        }
    }

    #[test]
    fn position_settings_default_to_refuse_and_no_cap() {
        let c = with(&[]);
        assert_eq!(c.position_negative, PositionNegative::Refuse);
        assert_eq!(c.max_position_value, None);
        let c = with(&[
            ("position_negative", "FLAT"),
            ("max_position_value", "2500.5"),
        ]);
        assert!(c.is_usable(), "{:?}", c.problems);
        assert_eq!(c.position_negative, PositionNegative::Flat);
        assert_eq!(c.max_position_value.unwrap().to_string(), "2500.5");
    }

    #[test]
    fn position_reserve_names_each_asset_once_by_any_of_its_names() {
        let c = with(&[("position_reserve", " xbt=0.5 , ETH=2,, ")]);
        assert!(c.is_usable(), "{:?}", c.problems);
        let pairs = crate::kraken::pairs::tests::pairs();
        let xbt = pairs.resolve("BTCUSD", &[]).unwrap();
        assert_eq!(c.reserve_for(xbt).to_string(), "0.5");
        let c = with(&[("position_reserve", "BTC=0.25")]);
        assert_eq!(c.reserve_for(xbt).to_string(), "0.25");
        let c = with(&[("position_reserve", "XXBT=0.125")]);
        assert_eq!(c.reserve_for(xbt).to_string(), "0.125");
        let c = with(&[("position_reserve", "USD=100")]);
        assert!(
            c.reserve_for(xbt).is_zero(),
            "a quote asset is not the base"
        );
        assert!(with(&[]).reserve_for(xbt).is_zero());
    }

    #[test]
    fn unparseable_kill_switch_fails_closed() {
        let c = with(&[("trading_enabled", "ture")]);
        assert!(!c.trading_enabled);
        let c = with(&[("dry_run", "flase")]);
        assert!(c.dry_run);
    }

    #[test]
    fn parses_explicit_values() {
        let c = with(&[
            ("environment", "development"),
            ("trading_enabled", "FALSE"),
            ("dry_run", "true"),
            ("log_level", "debug"),
            ("kraken_api_url", "http://127.0.0.1:18081/"),
            ("require_timestamp", "false"),
        ]);
        assert!(c.is_usable(), "{:?}", c.problems);
        assert_eq!(c.environment, Environment::Development);
        assert!(!c.trading_enabled);
        assert!(c.dry_run);
        assert_eq!(c.log_level, Level::Debug);
        assert_eq!(c.kraken_api_url, "http://127.0.0.1:18081");
    }

    #[test]
    fn secrets_lists_every_configured_secret() {
        let c = with(&[("kraken_otp", "otp-123456-abcdef")]);
        assert!(c.is_usable(), "{:?}", c.problems);
        assert_eq!(c.secrets().count(), 4);
    }

    #[test]
    fn a_secret_too_short_to_mask_is_a_configuration_error_never_used() {
        for otp in ["0", "1234", "12345678901"] {
            let c = with(&[("kraken_otp", otp)]);
            assert!(!c.is_usable(), "{otp}");
            let p: Vec<_> = c.problems.iter().map(|p| p.setting).collect();
            assert_eq!(p, ["kraken_otp"], "{otp}");
            assert!(!c.problems[0].reason.contains(otp), "{otp}");
            // Not searched for in outgoing text: the three others only.
            assert_eq!(c.secrets().count(), 3, "{otp}");
        }
        assert!(with(&[("kraken_otp", "123456789012")]).is_usable());
        let c = with(&[("kraken_api_key", "k")]);
        assert_eq!(c.problems[0].setting, "kraken_api_key");
        let c = with(&[("kraken_api_secret", "a2V5")]);
        assert_eq!(c.problems[0].setting, "kraken_api_secret");
        let c = with(&[("notify_url", "http://a.b/")]);
        assert_eq!(
            c.problems.iter().map(|p| p.setting).collect::<Vec<_>>(),
            ["notify_url"]
        );
    }
}
