//! `bridge-tool sim` (`scripts/sim`): a thin client of the simulator's `/_sim/...` admin
//! API, printing pretty JSON (recorded credentials masked).

use crate::curl::{self, Request};
use crate::{masked, pretty, sim_url, Args, EXIT_OK, EXIT_REFUSED};
use kraken_sim::{Fault, FaultKind, Permission};
use serde_json::{json, Value};
use std::time::Duration;

const USAGE: &str = "\
usage: scripts/sim [--sim URL] COMMAND

  orders                         the booked orders, with their AddOrder parameters
  requests [--last N]            the requests the simulator received (the last N)
  balance [ASSET AMOUNT]         the account's balances (after setting ASSET to AMOUNT)
  fault KIND [--method M] [--ms N] [--status N] [--body TEXT] [--error TEXT]
                                 queue a fault for the next private call (of method M);
                                 KIND: Delay (--ms), HttpStatus (--status, --body),
                                 KrakenError (--error), DropBeforeBook, DropAfterBook,
                                 ErrorAfterBook (--error), DelayAfterBook (--ms),
                                 ConsumeNonceNoAnswer, RateLimit
  fault [list] | fault clear     the queued faults | drop them all
  tier [starter|intermediate|pro|none]
                                 Kraken's REST rate limit tier (none: no limit)
  permissions [all|none|LIST]    what the API key may do; LIST: a comma list of
                                 query_funds, query_open_orders, query_closed_orders,
                                 create_orders, cancel_orders
  reset                          everything back to the start
  health

--sim URL: the simulator (default http://$SIM_ADDR, SIM_ADDR default 127.0.0.1:18081).
Exit status: 0 on success, 1 when the simulator refuses, 2 when it cannot be reached.";

pub fn main(words: Vec<String>) -> Result<u8, String> {
    let args = Args::parse(
        words,
        &[
            "--sim", "--last", "--method", "--ms", "--status", "--body", "--error",
        ],
        &[],
    )?;
    if args.flag("--help") {
        println!("{USAGE}");
        return Ok(EXIT_OK);
    }
    if args.positional.is_empty() {
        return Err(format!("a command is needed\n{USAGE}"));
    }
    let sim = Client {
        base: sim_url(args.value("--sim")),
    };
    let words: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["health"] => sim.get("/_sim/health"),
        ["orders"] => sim.get("/_sim/orders"),
        ["requests"] => {
            let last = match args.value("--last") {
                Some(n) => Some(
                    n.parse::<usize>()
                        .map_err(|_| format!("--last needs a count, not {n:?}"))?,
                ),
                None => None,
            };
            sim.get("/_sim/requests").map(|v| match (v, last) {
                (Value::Array(items), Some(n)) => {
                    Value::Array(items[items.len().saturating_sub(n)..].to_vec())
                }
                (v, _) => v,
            })
        }
        ["balance"] => sim.get("/_sim/balances"),
        ["balance", asset, amount] => sim
            .post("/_sim/balance", &json!({"asset": asset, "value": amount}))
            .and_then(|_| sim.get("/_sim/balances")),
        ["fault"] | ["fault", "list"] => sim.get("/_sim/faults"),
        ["fault", "clear"] => sim.delete("/_sim/faults"),
        ["fault", kind] => {
            let fault = fault(kind, &args)?;
            let body = serde_json::to_value(&fault).expect("a fault serializes");
            sim.post("/_sim/faults", &body)
                .and_then(|_| sim.get("/_sim/faults"))
        }
        ["tier"] => sim.get("/_sim/rate").map(tier_of),
        ["tier", tier] => {
            let tier = if tier.eq_ignore_ascii_case("none") {
                Value::Null
            } else {
                json!(tier.to_ascii_lowercase())
            };
            sim.post("/_sim/rate-tier", &json!({ "tier": tier }))
                .and_then(|_| sim.get("/_sim/rate"))
                .map(tier_of)
        }
        ["permissions"] => sim.get("/_sim/permissions"),
        ["permissions", list] => {
            let set = Permission::parse_list(list)?;
            sim.post("/_sim/permissions", &json!({ "permissions": set }))
                .and_then(|_| sim.get("/_sim/permissions"))
        }
        ["reset"] => sim.post("/_sim/reset", &json!({})),
        _ => return Err(format!("unknown command {:?}\n{USAGE}", words.join(" "))),
    };
    match result {
        Ok(v) => {
            println!("{}", pretty(&masked(&v)));
            Ok(EXIT_OK)
        }
        Err(SimError::Refused(v)) => {
            eprintln!("the simulator refused: {}", pretty(&v));
            Ok(EXIT_REFUSED)
        }
        Err(SimError::Unreachable(e)) => Err(format!(
            "no simulator at {} ({e}); scripts/up starts one, --sim or SIM_ADDR names another",
            sim.base
        )),
    }
}

/// The tier part of `/_sim/rate` (its counters are keyed by API key: not shown).
fn tier_of(rate: Value) -> Value {
    json!({"tier": rate["tier"], "rate_limited": rate["rate_limited"]})
}

/// The fault `kind` names (case, `-` and `_` ignored), with its options.
pub fn fault(kind: &str, args: &Args) -> Result<Fault, String> {
    let norm: String = kind
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let number = |flag: &str| -> Result<u64, String> {
        let text = args
            .value(flag)
            .ok_or_else(|| format!("fault {kind} needs {flag}"))?;
        text.parse()
            .map_err(|_| format!("{flag} needs a number, not {text:?}"))
    };
    let text = |flag: &str| -> Result<String, String> {
        args.value(flag)
            .map(str::to_string)
            .ok_or_else(|| format!("fault {kind} needs {flag}"))
    };
    let kind = match norm.as_str() {
        "delay" => FaultKind::Delay {
            ms: number("--ms")?,
        },
        "httpstatus" => FaultKind::HttpStatus {
            status: u16::try_from(number("--status")?)
                .map_err(|_| "--status needs an HTTP status".to_string())?,
            body: args.value("--body").unwrap_or_default().to_string(),
        },
        "krakenerror" => FaultKind::KrakenError {
            error: text("--error")?,
        },
        "dropbeforebook" => FaultKind::DropBeforeBook,
        "dropafterbook" => FaultKind::DropAfterBook,
        "errorafterbook" => FaultKind::ErrorAfterBook {
            error: text("--error")?,
        },
        "delayafterbook" => FaultKind::DelayAfterBook {
            ms: number("--ms")?,
        },
        "consumenoncenoanswer" => FaultKind::ConsumeNonceNoAnswer,
        "ratelimit" => FaultKind::RateLimit,
        _ => return Err(format!("unknown fault {kind:?}\n{USAGE}")),
    };
    Ok(Fault {
        method: args.value("--method").map(str::to_string),
        kind,
    })
}

enum SimError {
    /// The simulator answered with an error (its body).
    Refused(Value),
    /// Nothing answered.
    Unreachable(String),
}

struct Client {
    base: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, SimError> {
        let url = format!("{}{path}", self.base);
        let text = body.map(Value::to_string);
        let mut req = Request::new(method, &url)
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2));
        if let Some(t) = &text {
            req = req
                .header("Content-Type", "application/json")
                .body(t.as_bytes());
        }
        let answer = curl::send(&req).map_err(SimError::Unreachable)?;
        let value = answer
            .json()
            .unwrap_or_else(|| Value::String(answer.text()));
        if (200..300).contains(&answer.status) {
            Ok(value)
        } else {
            Err(SimError::Refused(value))
        }
    }

    fn get(&self, path: &str) -> Result<Value, SimError> {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, SimError> {
        self.call("POST", path, Some(body))
    }

    fn delete(&self, path: &str) -> Result<Value, SimError> {
        self.call("DELETE", path, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Args {
        Args::parse(
            words.iter().map(|w| w.to_string()).collect(),
            &["--method", "--ms", "--status", "--body", "--error"],
            &[],
        )
        .unwrap()
    }

    #[test]
    fn fault_kinds_by_name_with_their_options() {
        let f = fault("drop-after-book", &args(&["--method", "AddOrder"])).unwrap();
        assert_eq!(f, Fault::on("AddOrder", FaultKind::DropAfterBook));
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"method": "AddOrder", "kind": "DropAfterBook"})
        );
        assert_eq!(
            fault("Delay", &args(&["--ms", "250"])).unwrap(),
            Fault::any(FaultKind::Delay { ms: 250 })
        );
        assert_eq!(
            fault("kraken_error", &args(&["--error", "EService:Busy"]))
                .unwrap()
                .kind,
            FaultKind::KrakenError {
                error: "EService:Busy".into()
            }
        );
        assert_eq!(
            fault("HttpStatus", &args(&["--status", "502"]))
                .unwrap()
                .kind,
            FaultKind::HttpStatus {
                status: 502,
                body: String::new()
            }
        );
        assert!(fault("Delay", &args(&[])).unwrap_err().contains("--ms"));
        assert!(fault("Explode", &args(&[]))
            .unwrap_err()
            .contains("unknown fault"));
        assert!(fault("HttpStatus", &args(&["--status", "99999"])).is_err());
    }

    #[test]
    fn the_tier_view_leaves_out_the_per_key_counters() {
        let rate =
            json!({"tier": "starter", "rate_limited": 0, "counters": {"sim-api-key-local": 1.0}});
        assert_eq!(tier_of(rate), json!({"tier": "starter", "rate_limited": 0}));
    }
}
