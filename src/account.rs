//! Named accounts (contract 2.7): `kraken_accounts`, a JSON object whose members are
//! accounts, each with its own webhook secrets, optionally its own Kraken keys, and limits of
//! its own.
//!
//! An account is read as a second set of settings laid over the top level's: [`Raw::lookup`]
//! answers a setting name with the account's own value where the account owns that setting,
//! and with the top level's otherwise, so that [`Config`](crate::config::Config) parses an
//! account with the very rules it parses the top level with. Reasons never carry a value:
//! only account names (which `/health` shows anyway), setting names and positions.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// The most accounts `kraken_accounts` may name.
pub const MAX_ACCOUNTS: usize = 64;

/// The longest account name, in bytes.
pub const MAX_NAME_BYTES: usize = 32;

/// What an account may name (contract 3, `kraken_accounts`).
pub const ACCOUNT_SETTINGS: &[&str] = &[
    "webhook_secret",
    "webhook_secret_previous",
    "kraken_api_key",
    "kraken_api_secret",
    "kraken_api_keys",
    "kraken_otp",
    "trading_enabled",
    "dry_run",
    "allowed_symbols",
    "max_order_value",
    "position_reserve",
    "position_negative",
    "max_position_value",
    "rate_limit_per_minute",
];

/// The settings that make up an account's Kraken keys: an account that names any of them
/// has its own keys, and none of the top level's.
const KEY_SETTINGS: &[&str] = &[
    "kraken_api_key",
    "kraken_api_secret",
    "kraken_api_keys",
    "kraken_otp",
];

/// The webhook secrets: every account has its own, never the top level's.
const WEBHOOK_SECRETS: &[&str] = &["webhook_secret", "webhook_secret_previous"];

/// Whether `name` is an account name: 1 to 32 of `a-z0-9_-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// One account as written: its name and the settings it names, as setting text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// The account's name (valid).
    pub name: String,
    values: Vec<(&'static str, String)>,
}

impl Raw {
    /// Whether the account has Kraken keys of its own.
    pub fn has_own_keys(&self) -> bool {
        self.values.iter().any(|(n, _)| KEY_SETTINGS.contains(n))
    }

    /// Whether setting `name` is this account's own: its webhook secrets always, the Kraken
    /// key settings when it names any of them, an override when it names it.
    pub fn owns(&self, name: &str) -> bool {
        WEBHOOK_SECRETS.contains(&name)
            || (KEY_SETTINGS.contains(&name) && self.has_own_keys())
            || self.values.iter().any(|(n, _)| *n == name)
    }

    /// The value of setting `name` for this account: its own where it owns the setting,
    /// the top level's (`top`) otherwise.
    pub fn lookup(&self, name: &str, top: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        if name == "kraken_accounts" {
            return None;
        }
        if self.owns(name) {
            self.values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        } else {
            top(name)
        }
    }
}

/// Parses `kraken_accounts`. The reason names accounts, settings and positions, never a
/// value, nor a member name that is not a valid account or setting name (it could be a
/// secret pasted in the wrong place).
pub fn parse(text: &str) -> Result<Vec<Raw>, String> {
    let accounts: Entries<Entries<Value>> = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a JSON object of accounts, each a JSON object of settings (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if accounts.0.is_empty() {
        return Err("names no account".into());
    }
    if accounts.0.len() > MAX_ACCOUNTS {
        return Err(format!("more than {MAX_ACCOUNTS} accounts"));
    }
    let mut out: Vec<Raw> = Vec::new();
    for (i, (name, fields)) in accounts.0.into_iter().enumerate() {
        let n = i + 1;
        if !is_valid_name(&name) {
            return Err(format!(
                "account {n}: a name is 1 to {MAX_NAME_BYTES} of a-z, 0-9, _ and -"
            ));
        }
        if out.iter().any(|a| a.name == name) {
            return Err(format!("account {name}: named twice"));
        }
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for (j, (field, value)) in fields.0.into_iter().enumerate() {
            let Some(setting) = ACCOUNT_SETTINGS.iter().find(|s| **s == field) else {
                return Err(if crate::config::SETTINGS.contains(&field.as_str()) {
                    format!(
                        "account {name}: {field} is a top-level setting only; an account takes {}",
                        ACCOUNT_SETTINGS.join(", ")
                    )
                } else {
                    format!(
                        "account {name}: member {} is not a setting an account takes ({})",
                        j + 1,
                        ACCOUNT_SETTINGS.join(", ")
                    )
                });
            };
            if values.iter().any(|(s, _)| s == setting) {
                return Err(format!("account {name}: {setting} named twice"));
            }
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(x) => x.to_string(),
                // `kraken_api_keys` is a JSON list in its own right.
                v @ Value::Array(_) if *setting == "kraken_api_keys" => v.to_string(),
                Value::Array(items) if *setting == "allowed_symbols" => {
                    let symbols: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                    match symbols {
                        Some(s) => s.join(","),
                        None => {
                            return Err(format!(
                            "account {name}: allowed_symbols must be a string or a list of strings"
                        ))
                        }
                    }
                }
                _ => return Err(format!("account {name}: {setting} must be a string")),
            };
            values.push((setting, text));
        }
        out.push(Raw { name, values });
    }
    Ok(out)
}

/// A JSON object's members in order, duplicates kept (serde_json's own map keeps the last
/// of two members with one name: a duplicate account would silently replace the first).
struct Entries<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "swing", "swing_2", "x-1", &"a".repeat(32)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "Swing", "a b", "a/b", "é", "a.b", &"a".repeat(33)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn reads_values_of_every_json_type_an_operator_writes() {
        let raw = parse(
            r#"{"swing":{"webhook_secret":"s","trading_enabled":false,"max_order_value":500,
                "allowed_symbols":["XBTUSD","ETHUSD"],"kraken_api_keys":[{"api_key":"k"}],
                "dry_run":null}}"#,
        )
        .unwrap();
        let top = |n: &str| Some(format!("top {n}"));
        let a = &raw[0];
        assert_eq!(a.name, "swing");
        assert_eq!(a.lookup("trading_enabled", &top).as_deref(), Some("false"));
        assert_eq!(a.lookup("max_order_value", &top).as_deref(), Some("500"));
        assert_eq!(
            a.lookup("allowed_symbols", &top).as_deref(),
            Some("XBTUSD,ETHUSD")
        );
        assert_eq!(
            a.lookup("kraken_api_keys", &top).as_deref(),
            Some(r#"[{"api_key":"k"}]"#)
        );
        // A null is not named: the top level's value holds.
        assert_eq!(a.lookup("dry_run", &top).as_deref(), Some("top dry_run"));
    }

    #[test]
    fn an_account_owns_its_secrets_and_its_keys_all_or_none() {
        let top = |n: &str| Some(format!("top {n}"));
        let own = &parse(r#"{"a":{"webhook_secret":"s","kraken_api_key":"k"}}"#).unwrap()[0];
        // Its own key means none of the top level's: not its secret, not its otp.
        assert_eq!(own.lookup("kraken_api_secret", &top), None);
        assert_eq!(own.lookup("kraken_otp", &top), None);
        assert_eq!(own.lookup("kraken_api_key", &top).as_deref(), Some("k"));
        let shared = &parse(r#"{"a":{"webhook_secret":"s"}}"#).unwrap()[0];
        assert_eq!(
            shared.lookup("kraken_api_secret", &top).as_deref(),
            Some("top kraken_api_secret")
        );
        // Never the top level's webhook secrets.
        assert_eq!(shared.lookup("webhook_secret_previous", &top), None);
        assert_eq!(shared.lookup("kraken_accounts", &top), None);
        assert_eq!(
            shared.lookup("notify_url", &top).as_deref(),
            Some("top notify_url")
        );
    }

    #[test]
    fn refuses_every_malformed_shape_without_quoting_it() {
        let secretish = "SuperSecretValue123456";
        for (text, says) in [
            ("", "not a JSON object"),
            ("[]", "not a JSON object"),
            (&format!("\"{secretish}\""), "not a JSON object"),
            (&format!("{{\"a\":\"{secretish}\"}}"), "each a JSON object"),
            ("{}", "names no account"),
            (
                &format!("{{\"Bad Name\":{{\"webhook_secret\":\"{secretish}\"}}}}"),
                "account 1: a name is",
            ),
            (&format!("{{\"{secretish}\":{{}}}}"), "account 1: a name is"),
            (r#"{"a":{},"a":{}}"#, "account a: named twice"),
            (
                &format!("{{\"a\":{{\"{secretish}\":\"x\"}}}}"),
                "account a: member 1 is not a setting",
            ),
            (
                r#"{"a":{"notify_url":"x"}}"#,
                "notify_url is a top-level setting only",
            ),
            (
                r#"{"a":{"log_level":"debug"}}"#,
                "log_level is a top-level setting only",
            ),
            (
                &format!(
                    "{{\"a\":{{\"webhook_secret\":\"{secretish}\",\"webhook_secret\":\"y\"}}}}"
                ),
                "webhook_secret named twice",
            ),
            (
                &format!("{{\"a\":{{\"webhook_secret\":{{\"v\":\"{secretish}\"}}}}}}"),
                "webhook_secret must be a string",
            ),
            (
                &format!("{{\"a\":{{\"allowed_symbols\":[\"{secretish}\",1]}}}}"),
                "allowed_symbols must be",
            ),
            (
                &format!("{{\"a\":{{\"webhook_secret\":\"{secretish}\"}}"),
                "line 1",
            ),
        ] {
            let reason = parse(text).unwrap_err();
            assert!(reason.contains(says), "{text}: {reason}");
            assert!(!reason.contains(secretish), "{text}: {reason}");
        }
        let many: Vec<String> = (0..=MAX_ACCOUNTS)
            .map(|i| format!("\"a{i}\":{{}}"))
            .collect();
        let reason = parse(&format!("{{{}}}", many.join(","))).unwrap_err();
        assert!(reason.contains("more than 64 accounts"), "{reason}");
    }
}
