//! `bridge-tool`: the operator's tools behind `scripts/send`, `scripts/sim` and
//! `scripts/check-key`.
//!
//! ```text
//! bridge-tool send      [--url URL] (--file PATH | --symbol S --side buy|sell --volume V ...)
//!                       [--tradingview] [--sim URL]
//! bridge-tool sim       [--sim URL] orders|requests|balance|fault|tier|permissions|reset|health
//! bridge-tool check-key
//! ```
//!
//! Secrets come from the environment only (`WEBHOOK_SECRET`, `KRAKEN_API_KEY`,
//! `KRAKEN_API_SECRET`, `KRAKEN_OTP`), never from a flag, so they stay out of shell
//! history and `ps`, and no output ever carries one. HTTP goes through the `curl` CLI
//! (HTTPS to a deployed bridge or to Kraken included), configured on its standard input
//! (`curl -K -`) so that no header or body appears on its command line either.
//!
//! Exit status: 0 on success, 1 when the answer is a refusal (a non-2xx answer of the
//! bridge, a missing permission, a simulator error), 2 on a usage, configuration or
//! transport problem.

mod check_key;
mod curl;
mod send;
mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

const USAGE: &str =
    "usage: bridge-tool send|sim|check-key [options]   (--help after a command for its options)";

/// Success, a refusal, or a usage/configuration/transport problem.
pub const EXIT_OK: u8 = 0;
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_PROBLEM: u8 = 2;

fn main() -> ExitCode {
    let mut words: Vec<String> = std::env::args().skip(1).collect();
    if words.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(EXIT_PROBLEM);
    }
    let command = words.remove(0);
    let status = match command.as_str() {
        "send" => send::main(words),
        "sim" => sim::main(words),
        "check-key" => check_key::main(words),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(EXIT_OK)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match status {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_PROBLEM)
        }
    }
}

/// A command line split into `--flag value` / `--flag=value` options, boolean `--flag`s
/// and positional words.
#[derive(Debug, Default)]
pub struct Args {
    values: BTreeMap<String, String>,
    flags: BTreeSet<String>,
    /// The words that are not options, in order.
    pub positional: Vec<String>,
}

impl Args {
    /// Splits `words`; `value_flags` take a value, `bool_flags` do not, anything else
    /// starting with `--` is refused. `-h` is `--help`.
    pub fn parse(
        words: Vec<String>,
        value_flags: &[&str],
        bool_flags: &[&str],
    ) -> Result<Args, String> {
        let mut args = Args::default();
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            let word = if word == "-h" {
                "--help".to_string()
            } else {
                word
            };
            if !word.starts_with("--") {
                args.positional.push(word);
                continue;
            }
            let (name, inline) = match word.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word.clone(), None),
            };
            if value_flags.contains(&name.as_str()) {
                let value = match inline.or_else(|| words.next()) {
                    Some(v) => v,
                    None => return Err(format!("{name} needs a value")),
                };
                args.values.insert(name, value);
            } else if bool_flags.contains(&name.as_str()) || name == "--help" {
                if inline.is_some() {
                    return Err(format!("{name} takes no value"));
                }
                args.flags.insert(name);
            } else {
                return Err(format!("unknown option {name}"));
            }
        }
        Ok(args)
    }

    /// The value of a `--flag value` option.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether a boolean `--flag` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }
}

/// The simulator's base URL: `--sim`, else `http://$SIM_ADDR`, else
/// `http://127.0.0.1:18081` (what `scripts/up` starts). A bare `host:port` gets `http://`.
pub fn sim_url(flag: Option<&str>) -> String {
    let text = flag
        .map(str::to_string)
        .or_else(|| {
            std::env::var("SIM_ADDR")
                .ok()
                .filter(|a| !a.trim().is_empty())
        })
        .unwrap_or_else(|| "127.0.0.1:18081".to_string());
    let text = text.trim().trim_end_matches('/');
    if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    }
}

/// Keys whose values never reach the terminal: a credential the simulator recorded (the
/// `API-Key` of a request, an `otp` parameter) or anything named like a secret.
fn is_sensitive(key: &str) -> bool {
    const NAMES: [&str; 9] = [
        "otp",
        "api_key",
        "apikey",
        "api_sign",
        "secret",
        "signature",
        "password",
        "token",
        "authorization",
    ];
    let k = key.to_ascii_lowercase().replace('-', "_");
    NAMES.contains(&k.as_str())
        || ["_secret", "_token", "_password", "_otp"]
            .iter()
            .any(|s| k.ends_with(s))
}

/// `value` with every sensitive key's value (at any depth) replaced by `"***"`.
pub fn masked(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if is_sensitive(k) && !v.is_null() {
                        Value::String("***".into())
                    } else {
                        masked(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(masked).collect()),
        other => other.clone(),
    }
}

/// Pretty JSON, two-space indented.
pub fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn options_values_flags_and_positionals() {
        let a = Args::parse(
            words(&[
                "fault",
                "--method=AddOrder",
                "DropAfterBook",
                "--ms",
                "5",
                "--x",
            ]),
            &["--method", "--ms"],
            &["--x"],
        )
        .unwrap();
        assert_eq!(a.positional, ["fault", "DropAfterBook"]);
        assert_eq!(a.value("--method"), Some("AddOrder"));
        assert_eq!(a.value("--ms"), Some("5"));
        assert!(a.flag("--x"));
        assert!(!a.flag("--help"));
        assert!(Args::parse(words(&["-h"]), &[], &[])
            .unwrap()
            .flag("--help"));
        assert!(Args::parse(words(&["--secret", "x"]), &[], &[]).is_err());
        assert!(Args::parse(words(&["--ms"]), &["--ms"], &[]).is_err());
        assert!(Args::parse(words(&["--x=1"]), &[], &["--x"]).is_err());
    }

    #[test]
    fn sim_url_forms() {
        assert_eq!(sim_url(Some("127.0.0.1:9")), "http://127.0.0.1:9");
        assert_eq!(sim_url(Some("http://127.0.0.1:9/")), "http://127.0.0.1:9");
    }

    #[test]
    fn credentials_are_masked_at_any_depth() {
        let v = json!({
            "api_key": "k", "params": {"otp": "123", "nonce": "5", "volume": "1"},
            "list": [{"webhook_secret": "s"}], "key_count": 2, "cl_ord_id": "abc",
            "reason": null, "signature_valid": true, "API-Sign": "x"
        });
        assert_eq!(
            masked(&v),
            json!({
                "api_key": "***", "params": {"otp": "***", "nonce": "5", "volume": "1"},
                "list": [{"webhook_secret": "***"}], "key_count": 2, "cl_ord_id": "abc",
                "reason": null, "signature_valid": true, "API-Sign": "***"
            })
        );
    }
}
