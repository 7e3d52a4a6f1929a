//! `bridge-tool check-key` (`scripts/check-key`): which of the permissions the bridge needs
//! a Kraken API key has, judged from Kraken's answers to read calls and to one AddOrder
//! with `validate=true`. It never trades.

use crate::curl::{self, Request};
use crate::{Args, EXIT_OK, EXIT_PROBLEM, EXIT_REFUSED};
use kraken_sim::params::form_encode;
use kraken_sim::sign;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
usage: scripts/check-key [--account NAME]

Checks that a Kraken API key has the permissions the bridge needs, with calls that change
nothing: Balance, OpenOrders, ClosedOrders, and one AddOrder with validate=true (a market buy
of 0.0001 XBTUSD that Kraken only validates; nothing trades).

  KRAKEN_API_KEY, KRAKEN_API_SECRET   the key (required; never printed)
  KRAKEN_OTP                          its 2FA password, when it has one
  KRAKEN_API_KEYS                     the bridge's further keys, as in kraken_api_keys
                                      ([{\"api_key\":\"...\",\"api_secret\":\"...\"}]): each is
                                      checked too, one after the other
  KRAKEN_ACCOUNTS                     the bridge's kraken_accounts: every key of every
                                      account that has keys of its own is checked too
  KRAKEN_API_URL                      default https://api.kraken.com

  --account NAME   check only the keys account NAME trades with (its own, or the top
                   level's when it names none)

Nonces are the wall clock in microseconds, as the bridge's. Exit status: 0 when every needed
permission is present, 1 when one is missing, 2 when Kraken's answers cannot tell (a bad
key, secret or nonce, a lockout, no answer).";

/// The only private methods this tool calls.
pub const METHODS: [&str; 4] = ["Balance", "OpenOrders", "ClosedOrders", "AddOrder"];

/// The order it asks Kraken to validate: tiny, and never traded (`validate=true`).
pub const VALIDATE_ONLY_ORDER: [(&str, &str); 5] = [
    ("pair", "XBTUSD"),
    ("type", "buy"),
    ("ordertype", "market"),
    ("volume", "0.0001"),
    ("validate", "true"),
];

/// A permission the bridge needs, and the call that shows it.
pub struct Check {
    /// Kraken's name for it.
    pub permission: &'static str,
    pub method: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
    /// What the bridge uses it for.
    pub why: &'static str,
}

pub const CHECKS: [Check; 4] = [
    Check {
        permission: "Query funds",
        method: "Balance",
        fields: &[],
        why: "close and balance_percent alerts read the balance",
    },
    Check {
        permission: "Query open orders & trades",
        method: "OpenOrders",
        fields: &[],
        why: "an order whose outcome is unknown is looked up among open orders",
    },
    Check {
        permission: "Query closed orders & trades",
        method: "ClosedOrders",
        fields: &[],
        why: "before a resend, the order is looked up among closed orders",
    },
    Check {
        permission: "Create & modify orders",
        method: "AddOrder",
        fields: &VALIDATE_ONLY_ORDER,
        why: "every alert places an order",
    },
];

/// What one answer says about the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The permission is there.
    Present,
    /// `EGeneral:Permission denied`.
    Missing,
    /// Kraken's answer says nothing about the permission (with why).
    Unknown(String),
    /// The key itself is unusable: no further call is worth making (with why).
    Stop(String),
}

/// Reads Kraken's `error` list for `method`.
pub fn judge(method: &str, errors: &[String]) -> Verdict {
    let Some(first) = errors.iter().find(|e| e.starts_with('E')) else {
        return Verdict::Present;
    };
    let e = first.as_str();
    match e {
        "EGeneral:Permission denied" => Verdict::Missing,
        "EAPI:Invalid key" => Verdict::Stop(format!(
            "{e}: Kraken does not know this key (check KRAKEN_API_KEY)"
        )),
        "EAPI:Invalid signature" => Verdict::Stop(format!(
            "{e}: KRAKEN_API_SECRET is not this key's private key, or the key has 2FA \
             and KRAKEN_OTP is missing or wrong"
        )),
        "EAPI:Invalid nonce" => Verdict::Stop(format!(
            "{e}: the key has seen a larger nonce (another tool using it with nanosecond \
             nonces, or a clock ahead); give the bridge a key of its own, nonce window 0"
        )),
        _ if e.starts_with("EGeneral:Temporary lockout") => {
            Verdict::Stop(format!("{e}: too many failed calls; wait about 15 minutes"))
        }
        _ if e.starts_with("EAPI:Rate limit exceeded") || e.starts_with("EGeneral:Too many") => {
            Verdict::Stop(format!("{e}: try again in a minute"))
        }
        // Kraken judged the order itself, so the key was allowed to create it.
        _ if method == "AddOrder"
            && (e.starts_with("EOrder:") || e.starts_with("EGeneral:Invalid arguments")) =>
        {
            Verdict::Present
        }
        _ => Verdict::Unknown(e.to_string()),
    }
}

/// Signs and sends private calls with microsecond nonces.
struct Kraken {
    base: String,
    key: String,
    secret: Vec<u8>,
    otp: Option<String>,
    last_nonce: u64,
}

impl Kraken {
    fn nonce(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.last_nonce = now.max(self.last_nonce + 1);
        self.last_nonce
    }

    /// One private call; `Err` when no Kraken answer came back.
    fn call(&mut self, method: &str, fields: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let nonce = self.nonce().to_string();
        let body = private_body(method, &nonce, self.otp.as_deref(), fields);
        let path = format!("/0/private/{method}");
        let url = format!("{}{path}", self.base);
        let api_sign = sign::sign(&self.secret, &path, &nonce, body.as_bytes());
        let req = Request::new("POST", &url)
            .header("API-Key", &self.key)
            .header("API-Sign", &api_sign)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", "tv-kraken-bridge check-key")
            .body(body.as_bytes())
            .timeout(Duration::from_secs(15));
        let answer = curl::send(&req)?;
        let json = answer
            .json()
            .ok_or_else(|| format!("HTTP {} without a Kraken answer", answer.status))?;
        let errors = json["error"]
            .as_array()
            .ok_or_else(|| format!("HTTP {} without a Kraken answer", answer.status))?;
        Ok(errors
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect())
    }
}

/// The form body of a private call. Refuses (panics on) anything this tool must never send:
/// a method outside [`METHODS`], an AddOrder without `validate=true`.
pub fn private_body(
    method: &str,
    nonce: &str,
    otp: Option<&str>,
    fields: &[(&str, &str)],
) -> String {
    assert!(
        METHODS.contains(&method),
        "check-key calls only {METHODS:?}, not {method}"
    );
    if method == "AddOrder" {
        assert!(
            fields.contains(&("validate", "true")),
            "check-key never sends an AddOrder without validate=true"
        );
    }
    let mut all = vec![("nonce", nonce)];
    if let Some(otp) = otp {
        all.push(("otp", otp));
    }
    all.extend_from_slice(fields);
    form_encode(&all)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn main(words: Vec<String>) -> Result<u8, String> {
    let args = Args::parse(words, &["--account"], &[])?;
    if args.flag("--help") {
        println!("{USAGE}");
        return Ok(EXIT_OK);
    }
    if let Some(extra) = args.positional.first() {
        return Err(format!(
            "unexpected argument {extra:?}: the key comes from the environment\n{USAGE}"
        ));
    }
    let accounts = match env("KRAKEN_ACCOUNTS") {
        None => Vec::new(),
        Some(text) => accounts(&text)?,
    };
    let keys = match args.value("--account") {
        None => {
            let mut keys = top_keys()?;
            for (_, own) in accounts {
                keys.extend(own);
            }
            keys
        }
        Some(name) => match accounts.into_iter().find(|(n, _)| n == name) {
            None => return Err(format!("KRAKEN_ACCOUNTS names no account {name:?}")),
            Some((_, own)) if !own.is_empty() => own,
            Some(_) => {
                println!("Account {name} names no keys of its own: it trades with the top level's");
                top_keys()?
            }
        },
    };
    let base = env("KRAKEN_API_URL").unwrap_or_else(|| "https://api.kraken.com".into());
    let base = base.trim().trim_end_matches('/').to_string();
    // The worst outcome of any key: refused (1) before cannot tell (2) before ok (0).
    let mut worst = EXIT_OK;
    let count = keys.len();
    for (
        n,
        Key {
            key,
            secret,
            otp,
            name,
        },
    ) in keys.into_iter().enumerate()
    {
        if count > 1 {
            println!(
                "{}Key {} of {count} ({name})",
                if n > 0 { "\n" } else { "" },
                n + 1
            );
        }
        let secret = sign::decode_secret(secret.trim()).map_err(|_| {
            format!("{name}: the secret is not base64, as Kraken's private keys are")
        })?;
        let kraken = Kraken {
            base: base.clone(),
            key: key.trim().to_string(),
            secret,
            otp,
            last_nonce: 0,
        };
        let code = check_one(kraken);
        worst = match (worst, code) {
            (EXIT_REFUSED, _) | (_, EXIT_REFUSED) => EXIT_REFUSED,
            (EXIT_PROBLEM, _) | (_, EXIT_PROBLEM) => EXIT_PROBLEM,
            _ => EXIT_OK,
        };
    }
    Ok(worst)
}

/// One key to check, and where it came from (never its value).
struct Key {
    key: String,
    secret: String,
    otp: Option<String>,
    name: String,
}

/// `kraken_api_keys`' shape: `[{"api_key":"...","api_secret":"..."}]`.
fn more_keys(text: &str, what: &str, otp: &Option<String>) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct More {
        api_key: String,
        api_secret: String,
    }
    let more: Vec<More> = serde_json::from_str(text).map_err(|e| {
        format!(
            "{what} is not a JSON list of {{\"api_key\",\"api_secret\"}} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    Ok(more
        .into_iter()
        .enumerate()
        .map(|(i, k)| Key {
            key: k.api_key,
            secret: k.api_secret,
            otp: otp.clone(),
            name: format!("{what} key {}", i + 1),
        })
        .collect())
}

/// The top level's keys: KRAKEN_API_KEY and KRAKEN_API_SECRET, then KRAKEN_API_KEYS.
fn top_keys() -> Result<Vec<Key>, String> {
    let otp = env("KRAKEN_OTP");
    let mut keys = vec![Key {
        key: env("KRAKEN_API_KEY").ok_or("KRAKEN_API_KEY is not set")?,
        secret: env("KRAKEN_API_SECRET").ok_or("KRAKEN_API_SECRET is not set")?,
        otp: otp.clone(),
        name: "KRAKEN_API_KEY".into(),
    }];
    if let Some(text) = env("KRAKEN_API_KEYS") {
        keys.extend(more_keys(&text, "KRAKEN_API_KEYS", &otp)?);
    }
    Ok(keys)
}

/// KRAKEN_ACCOUNTS (the bridge's `kraken_accounts`): each account's name and its own keys
/// (none when it trades with the top level's). Messages name accounts, never a value.
fn accounts(text: &str) -> Result<Vec<(String, Vec<Key>)>, String> {
    let parsed: serde_json::Map<String, Value> = serde_json::from_str(text).map_err(|e| {
        format!(
            "KRAKEN_ACCOUNTS is not a JSON object of accounts (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let mut out = Vec::new();
    for (name, account) in parsed {
        let field = |f: &str| match account.get(f) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(v @ Value::Array(_)) => Some(v.to_string()),
            _ => None,
        };
        let what = format!("account {name}");
        let otp = field("kraken_otp");
        let mut own = Vec::new();
        match (field("kraken_api_key"), field("kraken_api_secret")) {
            (Some(key), Some(secret)) => own.push(Key {
                key,
                secret,
                otp: otp.clone(),
                name: format!("{what} kraken_api_key"),
            }),
            (None, None) => {}
            _ => {
                return Err(format!(
                    "{what}: kraken_api_key and kraken_api_secret go together"
                ))
            }
        }
        if let Some(text) = field("kraken_api_keys") {
            own.extend(more_keys(&text, &format!("{what} kraken_api_keys"), &otp)?);
        }
        out.push((name, own));
    }
    Ok(out)
}

/// Checks one key and prints its report: the exit status it alone would give.
fn check_one(mut kraken: Kraken) -> u8 {
    println!(
        "Checking a Kraken API key at {} (key and secret not shown; nothing trades)",
        kraken.base
    );
    let mut verdicts = Vec::new();
    let mut stopped = None;
    for check in &CHECKS {
        if stopped.is_some() {
            verdicts.push(Verdict::Unknown("not asked".into()));
            continue;
        }
        let mut verdict = ask(&mut kraken, check);
        // One nonce refusal can be a call of the bridge on the same key in the same
        // microsecond: one more try with a fresh nonce.
        if matches!(&verdict, Verdict::Stop(w) if w.starts_with("EAPI:Invalid nonce")) {
            std::thread::sleep(Duration::from_millis(50));
            verdict = ask(&mut kraken, check);
        }
        let shown = match &verdict {
            Verdict::Present => "ok".to_string(),
            Verdict::Missing => "EGeneral:Permission denied".to_string(),
            Verdict::Unknown(why) | Verdict::Stop(why) => why.clone(),
        };
        let call = if check.method == "AddOrder" {
            "AddOrder validate=true"
        } else {
            check.method
        };
        println!("  {call:<24} {shown}");
        if let Verdict::Stop(why) = &verdict {
            stopped = Some(why.clone());
        }
        verdicts.push(verdict);
    }

    println!("\nPermissions the bridge needs:");
    let mut missing = Vec::new();
    let mut unknown = false;
    for (check, verdict) in CHECKS.iter().zip(&verdicts) {
        let mark = match verdict {
            Verdict::Present => "present",
            Verdict::Missing => {
                missing.push(check.permission);
                "MISSING"
            }
            Verdict::Unknown(_) | Verdict::Stop(_) => {
                unknown = true;
                "unknown"
            }
        };
        println!("  {mark:<8} {:<30} {}", check.permission, check.why);
    }
    println!(
        "  {:<8} {:<30} cancel_all alerts; not checked (only a cancel would show it)",
        "-", "Cancel & close orders"
    );
    println!("Make sure the key has no withdrawal permission: the bridge never needs one.");

    if !missing.is_empty() {
        println!(
            "\nMissing: {}. Add it to the key on Kraken (Settings, API) and run this again.",
            missing.join(", ")
        );
        if missing.len() == CHECKS.len() {
            println!(
                "Every call was refused: if the key is restricted to some IP addresses, \
                 this machine may not be one of them."
            );
        }
        return EXIT_REFUSED;
    }
    if let Some(why) = stopped {
        println!("\nCannot tell: {why}");
        return EXIT_PROBLEM;
    }
    if unknown {
        println!("\nCannot tell every permission from Kraken's answers (see above).");
        return EXIT_PROBLEM;
    }
    println!("\nEvery permission the bridge needs is present.");
    EXIT_OK
}

fn ask(kraken: &mut Kraken, check: &Check) -> Verdict {
    match kraken.call(check.method, check.fields) {
        Ok(errors) => judge(check.method, &errors),
        Err(e) => Verdict::Stop(format!("no answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(list: &[&str]) -> Vec<String> {
        list.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn the_only_order_is_validate_only() {
        assert!(VALIDATE_ONLY_ORDER.contains(&("validate", "true")));
        let add = CHECKS.iter().find(|c| c.method == "AddOrder").unwrap();
        assert_eq!(add.fields, VALIDATE_ONLY_ORDER);
        let body = private_body("AddOrder", "1", None, add.fields);
        assert!(body.contains("validate=true"), "{body}");
        for c in &CHECKS {
            assert!(METHODS.contains(&c.method));
        }
    }

    #[test]
    #[should_panic(expected = "never sends an AddOrder without validate=true")]
    fn an_add_order_without_validate_is_refused() {
        private_body("AddOrder", "1", None, &VALIDATE_ONLY_ORDER[..4]);
    }

    #[test]
    #[should_panic(expected = "check-key calls only")]
    fn other_methods_are_refused() {
        private_body("CancelAll", "1", None, &[]);
    }

    #[test]
    fn the_body_carries_nonce_and_otp_first() {
        assert_eq!(
            private_body("Balance", "1700000000000000", Some("123456"), &[]),
            "nonce=1700000000000000&otp=123456"
        );
    }

    #[test]
    fn kraken_answers_judged() {
        assert_eq!(judge("Balance", &[]), Verdict::Present);
        assert_eq!(
            judge("Balance", &errs(&["WGeneral:Something"])),
            Verdict::Present
        );
        assert_eq!(
            judge("Balance", &errs(&["EGeneral:Permission denied"])),
            Verdict::Missing
        );
        assert_eq!(
            judge("AddOrder", &errs(&["EGeneral:Permission denied"])),
            Verdict::Missing
        );
        for e in [
            "EOrder:Insufficient funds",
            "EOrder:Order minimum not met",
            "EGeneral:Invalid arguments:volume",
        ] {
            assert_eq!(judge("AddOrder", &errs(&[e])), Verdict::Present, "{e}");
            assert!(matches!(judge("Balance", &errs(&[e])), Verdict::Unknown(_)));
        }
        for e in [
            "EAPI:Invalid key",
            "EAPI:Invalid signature",
            "EAPI:Invalid nonce",
            "EGeneral:Temporary lockout",
            "EAPI:Rate limit exceeded",
        ] {
            assert!(
                matches!(judge("Balance", &errs(&[e])), Verdict::Stop(_)),
                "{e}"
            );
        }
        assert!(matches!(
            judge("AddOrder", &errs(&["EService:Unavailable"])),
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn nonces_are_microseconds_and_increase() {
        let mut k = Kraken {
            base: String::new(),
            key: String::new(),
            secret: Vec::new(),
            otp: None,
            last_nonce: 0,
        };
        let a = k.nonce();
        let b = k.nonce();
        assert!(b > a);
        // Microseconds: 16 digits until 2286.
        assert_eq!(a.to_string().len(), 16, "{a}");
    }
}
