//! Reading Kraken's answers: the `{"error":[...],"result":{...}}` envelope and the three
//! classes of error (kraken.md §7): a definite rejection, a transient refusal that placed
//! nothing, and an ambiguous answer after which the order may exist.

use serde::Deserialize;
use serde_json::Value;

/// What came back from the host's outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A complete HTTP response.
    Reply {
        /// HTTP status.
        status: u16,
        /// Body bytes.
        body: Vec<u8>,
    },
    /// The request certainly never reached Kraken (DNS failure, connection refused, denied
    /// by the host's outbound allow-list).
    NotSent(String),
    /// The request may have reached Kraken (time-out, connection reset, truncated answer).
    Lost(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    error: Vec<String>,
    #[serde(default)]
    result: Option<Value>,
}

/// How a Kraken error string should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Kraken refused the request; sending it again will not help.
    Rejected,
    /// Kraken refused the request for now (rate limit, nonce, market mode); nothing was placed.
    Transient,
    /// Kraken may or may not have acted on the request.
    Ambiguous,
}

/// Kraken writes some errors with a space after the category (`EService: Throttled: ts`).
fn normalised(error: &str) -> String {
    error.trim().replacen(": ", ":", 1)
}

/// Whether Kraken refused a request for its nonce (`EAPI:Invalid nonce`, with or without the
/// space): nothing was done, and the request may go again with a fresh nonce.
pub fn is_invalid_nonce(error: &str) -> bool {
    normalised(error).starts_with("EAPI:Invalid nonce")
}

/// Whether Kraken refused the key itself (unknown or revoked, a signature its secret does not
/// make, a permission it lacks): nothing was done, so the same call may go out on another key
/// of the account.
pub fn is_key_refusal(error: &str) -> bool {
    let e = normalised(error);
    [
        "EAPI:Invalid key",
        "EAPI:Invalid signature",
        "EGeneral:Permission denied",
    ]
    .iter()
    .any(|p| e.starts_with(p))
}

/// Classifies one Kraken error string.
pub fn classify(error: &str) -> ErrorClass {
    const AMBIGUOUS: &[&str] = &[
        "EService:Unavailable",
        "EService:Busy",
        "EService:Deadline elapsed",
        "EGeneral:Internal error",
        "EDatabase:Internal error",
    ];
    const TRANSIENT: &[&str] = &[
        "EAPI:Rate limit exceeded",
        "EOrder:Rate limit exceeded",
        "EGeneral:Too many requests",
        "EGeneral:Temporary lockout",
        "EAPI:Invalid nonce",
        "EService:Throttled",
        "EService:Market in",
    ];
    let e = normalised(error);
    if AMBIGUOUS.iter().any(|p| e.starts_with(p)) {
        ErrorClass::Ambiguous
    } else if TRANSIENT.iter().any(|p| e.starts_with(p)) {
        ErrorClass::Transient
    } else {
        ErrorClass::Rejected
    }
}

/// The outcome of one AddOrder attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOrder {
    /// Booked: Kraken returned transaction ids.
    Placed {
        /// Kraken transaction ids.
        txid: Vec<String>,
        /// Kraken's description of the order.
        description: String,
    },
    /// `validate=true` accepted the order; nothing trades.
    Validated {
        /// Kraken's description of the order.
        description: String,
    },
    /// Kraken refused it.
    Rejected {
        /// Kraken's first error.
        error: String,
    },
    /// Certainly not placed; worth sending again later.
    Transient {
        /// Kraken's error or the transport failure.
        error: String,
    },
    /// The order may or may not exist.
    Ambiguous {
        /// What made it ambiguous.
        reason: String,
    },
}

/// Reads the answer to an AddOrder sent with or without `validate`.
pub fn add_order(transport: &Transport, validate: bool) -> AddOrder {
    let outcome = read_add_order(transport);
    match outcome {
        // A validation request trades nothing, so an unclear answer is only a retry.
        AddOrder::Ambiguous { reason } if validate => AddOrder::Transient { error: reason },
        other => other,
    }
}

fn read_add_order(transport: &Transport) -> AddOrder {
    let (status, body) = match transport {
        Transport::NotSent(why) => {
            return AddOrder::Transient {
                error: format!("Kraken unreachable: {why}"),
            };
        }
        Transport::Lost(why) => {
            return AddOrder::Ambiguous {
                reason: format!("no answer from Kraken: {why}"),
            };
        }
        Transport::Reply { status, body } => (*status, body),
    };
    if status != 200 {
        return AddOrder::Ambiguous {
            reason: format!("Kraken answered HTTP {status}"),
        };
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return AddOrder::Ambiguous {
            reason: "Kraken's answer is not its JSON envelope".into(),
        };
    };
    if let Some(error) = envelope.error.iter().find(|e| e.starts_with('E')) {
        let error = error.clone();
        return match classify(&error) {
            ErrorClass::Rejected => AddOrder::Rejected { error },
            ErrorClass::Transient => AddOrder::Transient { error },
            ErrorClass::Ambiguous => AddOrder::Ambiguous { reason: error },
        };
    }
    let result = envelope.result.unwrap_or(Value::Null);
    let description = describe(&result);
    let txid: Vec<String> = result
        .get("txid")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !txid.is_empty() {
        AddOrder::Placed { txid, description }
    } else if result.get("descr").is_some() {
        AddOrder::Validated { description }
    } else {
        AddOrder::Ambiguous {
            reason: "Kraken's answer has neither txid nor descr".into(),
        }
    }
}

/// What an `OpenOrders` or `ClosedOrders` look-up by `cl_ord_id` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// An order with that `cl_ord_id` exists (in any state).
    Found {
        /// Its transaction id.
        txid: String,
        /// Kraken's description of it.
        description: String,
        /// Its status (`open`, `closed`, `canceled`, ...).
        status: String,
    },
    /// The list holds no order with that `cl_ord_id`.
    Absent,
    /// The look-up itself failed; nothing can be concluded.
    Failed(String),
}

/// Reads an `OpenOrders` (`list = "open"`) or `ClosedOrders` (`list = "closed"`) answer and
/// finds the order whose `cl_ord_id` is `cl_ord_id` (the filter is checked, not trusted).
pub fn find_order(transport: &Transport, list: &str, cl_ord_id: &str) -> Lookup {
    let body = match transport {
        Transport::Reply { status: 200, body } => body,
        Transport::Reply { status, .. } => return Lookup::Failed(format!("HTTP {status}")),
        Transport::NotSent(why) | Transport::Lost(why) => return Lookup::Failed(why.clone()),
    };
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return Lookup::Failed("not Kraken's JSON envelope".into());
    };
    if let Some(error) = envelope.error.iter().find(|e| e.starts_with('E')) {
        return Lookup::Failed(error.clone());
    }
    let Some(orders) = envelope
        .result
        .as_ref()
        .and_then(|r| r.get(list))
        .and_then(Value::as_object)
    else {
        return Lookup::Failed(format!("no `{list}` list in the answer"));
    };
    for (txid, order) in orders {
        if order.get("cl_ord_id").and_then(Value::as_str) == Some(cl_ord_id) {
            return Lookup::Found {
                txid: txid.clone(),
                description: describe(order),
                status: order
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            };
        }
    }
    Lookup::Absent
}

/// The `result` of a read-only call, or why there is none.
fn result_of(transport: &Transport) -> Result<Value, String> {
    let body = match transport {
        Transport::Reply { status: 200, body } => body,
        Transport::Reply { status, .. } => return Err(format!("Kraken answered HTTP {status}")),
        Transport::NotSent(why) | Transport::Lost(why) => return Err(why.clone()),
    };
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|_| "not Kraken's JSON envelope".to_string())?;
    if let Some(error) = envelope.error.iter().find(|e| e.starts_with('E')) {
        return Err(error.clone());
    }
    envelope.result.ok_or_else(|| "no result".to_string())
}

fn decimal(v: &Value) -> Option<rust_decimal::Decimal> {
    use std::str::FromStr;
    match v {
        Value::String(s) => rust_decimal::Decimal::from_str(s).ok(),
        Value::Number(n) => rust_decimal::Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

/// The last trade price of `pair_id` from a `Ticker` answer (`c[0]`).
pub fn last_price(transport: &Transport, pair_id: &str) -> Result<rust_decimal::Decimal, String> {
    let result = result_of(transport)?;
    let ticker = result
        .get(pair_id)
        .or_else(|| result.as_object().and_then(|m| m.values().next()))
        .ok_or("no ticker for the pair")?;
    decimal(&ticker["c"][0]).ok_or_else(|| "no last trade in the ticker".to_string())
}

/// A pair's two assets as `BalanceEx` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balances {
    /// The base asset's balance less what open orders hold.
    pub free_base: rust_decimal::Decimal,
    /// The quote asset's balance less what open orders hold.
    pub free_quote: rust_decimal::Decimal,
    /// The base asset's whole balance, held by open orders or not.
    pub whole_base: rust_decimal::Decimal,
    /// The quote asset's whole balance.
    pub whole_quote: rust_decimal::Decimal,
}

/// The balances of `base` and `quote` in a `BalanceEx` answer (an asset it does not list:
/// zero).
pub fn balances(transport: &Transport, base: &str, quote: &str) -> Result<Balances, String> {
    let result = result_of(transport)?;
    let read = |asset: &str| {
        let entry = &result[asset];
        let balance = decimal(&entry["balance"])
            .unwrap_or_default()
            .max(rust_decimal::Decimal::ZERO);
        let hold = decimal(&entry["hold_trade"]).unwrap_or_default();
        let free = balance
            .checked_sub(hold)
            .unwrap_or_default()
            .max(rust_decimal::Decimal::ZERO);
        (free, balance)
    };
    let ((free_base, whole_base), (free_quote, whole_quote)) = (read(base), read(quote));
    Ok(Balances {
        free_base,
        free_quote,
        whole_base,
        whole_quote,
    })
}

/// The free balances of `base` and `quote` (balance less what open orders hold).
pub fn free_balances(
    transport: &Transport,
    base: &str,
    quote: &str,
) -> Result<(rust_decimal::Decimal, rust_decimal::Decimal), String> {
    balances(transport, base, quote).map(|b| (b.free_base, b.free_quote))
}

/// What a `CancelAll` answer says.
pub fn cancel_all(transport: &Transport) -> AddOrder {
    match result_of(transport) {
        Ok(result) => AddOrder::Placed {
            txid: Vec::new(),
            description: result["count"].as_u64().unwrap_or(0).to_string(),
        },
        Err(e) => match classify(&e) {
            ErrorClass::Rejected if e.starts_with('E') => AddOrder::Rejected { error: e },
            _ => AddOrder::Transient { error: e },
        },
    }
}

/// `descr.order` (and `descr.close`) of an AddOrder result or an order object.
fn describe(result: &Value) -> String {
    let descr = result.get("descr");
    let order = descr
        .and_then(|d| d.get("order"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match descr.and_then(|d| d.get("close")).and_then(Value::as_str) {
        Some(close) if !close.is_empty() => format!("{order}; {close}"),
        _ => order.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_refusals_with_or_without_the_space() {
        assert!(is_invalid_nonce("EAPI:Invalid nonce"));
        assert!(is_invalid_nonce(" EAPI: Invalid nonce"));
        assert!(!is_invalid_nonce("EAPI:Invalid key"));
        assert!(is_key_refusal("EAPI:Invalid key"));
        assert!(is_key_refusal("EAPI: Invalid signature"));
        assert!(is_key_refusal("EGeneral:Permission denied"));
        assert!(!is_key_refusal("EAPI:Invalid nonce"));
        assert!(!is_key_refusal("EOrder:Insufficient funds"));
        assert_eq!(classify("EAPI: Invalid nonce"), ErrorClass::Transient);
    }

    fn reply(body: &str) -> Transport {
        Transport::Reply {
            status: 200,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn placed() {
        let t = reply(
            r#"{"error":[],"result":{"descr":{"order":"buy 2.12340000 XBTUSD @ limit 25000.1 with 2:1 leverage","close":"close position @ stop loss 22000.0 -> limit 21000.0"},"txid":["OUF4EM-FRGI2-MQMWZD"]}}"#,
        );
        assert_eq!(
            add_order(&t, false),
            AddOrder::Placed {
                txid: vec!["OUF4EM-FRGI2-MQMWZD".into()],
                description: "buy 2.12340000 XBTUSD @ limit 25000.1 with 2:1 leverage; close position @ stop loss 22000.0 -> limit 21000.0".into()
            }
        );
    }

    #[test]
    fn validated() {
        let t = reply(
            r#"{"error":[],"result":{"descr":{"order":"buy 5000.00000000 XDGUSD @ market"}}}"#,
        );
        assert_eq!(
            add_order(&t, true),
            AddOrder::Validated {
                description: "buy 5000.00000000 XDGUSD @ market".into()
            }
        );
    }

    #[test]
    fn error_classes() {
        for (e, class) in [
            ("EOrder:Insufficient funds", ErrorClass::Rejected),
            ("EGeneral:Invalid arguments:volume", ErrorClass::Rejected),
            ("EAPI:Invalid signature", ErrorClass::Rejected),
            ("EQuery:Unknown asset pair", ErrorClass::Rejected),
            ("EService:Unavailable", ErrorClass::Ambiguous),
            ("EService:Busy", ErrorClass::Ambiguous),
            ("EService:Deadline elapsed", ErrorClass::Ambiguous),
            ("EGeneral:Internal error", ErrorClass::Ambiguous),
            ("EAPI:Rate limit exceeded", ErrorClass::Transient),
            ("EAPI:Invalid nonce", ErrorClass::Transient),
            ("EService: Throttled: 1700000000", ErrorClass::Transient),
            ("EService:Throttled: 1700000000", ErrorClass::Transient),
            ("EService:Market in cancel_only mode", ErrorClass::Transient),
        ] {
            assert_eq!(classify(e), class, "{e}");
        }
    }

    #[test]
    fn finds_orders_by_cl_ord_id() {
        let open = reply(
            r#"{"error":[],"result":{"open":{"OTX1-AAAAA-BBBBBB":{"cl_ord_id":"abc","status":"open","descr":{"order":"buy 1.00000000 XBTUSD @ limit 10.0"}},"OTX2-AAAAA-BBBBBB":{"cl_ord_id":"zzz","status":"open","descr":{"order":"x"}}}}}"#,
        );
        assert_eq!(
            find_order(&open, "open", "abc"),
            Lookup::Found {
                txid: "OTX1-AAAAA-BBBBBB".into(),
                description: "buy 1.00000000 XBTUSD @ limit 10.0".into(),
                status: "open".into()
            }
        );
        assert_eq!(find_order(&open, "open", "nope"), Lookup::Absent);
        // The wrong list, an error, a transport failure: nothing can be concluded.
        assert!(matches!(
            find_order(&open, "closed", "abc"),
            Lookup::Failed(_)
        ));
        assert!(matches!(
            find_order(&reply(r#"{"error":["EAPI:Invalid nonce"]}"#), "open", "abc"),
            Lookup::Failed(_)
        ));
        assert!(matches!(
            find_order(&Transport::Lost("timed out".into()), "open", "abc"),
            Lookup::Failed(_)
        ));
        let closed = reply(r#"{"error":[],"result":{"closed":{},"count":0}}"#);
        assert_eq!(find_order(&closed, "closed", "abc"), Lookup::Absent);
    }

    #[test]
    fn market_data() {
        let t = reply(
            r#"{"error":[],"result":{"XXBTZUSD":{"a":["67001.0","1","1.000"],"c":["67000.5","0.1"]}}}"#,
        );
        assert_eq!(last_price(&t, "XXBTZUSD").unwrap().to_string(), "67000.5");
        let b = reply(
            r#"{"error":[],"result":{"XXBT":{"balance":"2.5","hold_trade":"0.5"},"ZUSD":{"balance":"100.0000","hold_trade":"0"}}}"#,
        );
        let (base, quote) = free_balances(&b, "XXBT", "ZUSD").unwrap();
        assert_eq!(
            (base.to_string(), quote.to_string()),
            ("2.0".into(), "100.0000".into())
        );
        let (none, _) = free_balances(&b, "SOL", "ZUSD").unwrap();
        assert!(none.is_zero());
        assert!(last_price(&reply(r#"{"error":["EQuery:Unknown asset pair"]}"#), "X").is_err());
        assert_eq!(
            cancel_all(&reply(
                r#"{"error":[],"result":{"count":3,"pending":false}}"#
            )),
            AddOrder::Placed {
                txid: vec![],
                description: "3".into()
            }
        );
        assert!(matches!(
            cancel_all(&reply(r#"{"error":["EAPI:Invalid key"]}"#)),
            AddOrder::Rejected { .. }
        ));
        assert!(matches!(
            cancel_all(&Transport::Lost("x".into())),
            AddOrder::Transient { .. }
        ));
    }

    #[test]
    fn errors_and_transport() {
        assert_eq!(
            add_order(&reply(r#"{"error":["EOrder:Insufficient funds"]}"#), false),
            AddOrder::Rejected {
                error: "EOrder:Insufficient funds".into()
            }
        );
        assert!(matches!(
            add_order(&reply(r#"{"error":["EService:Unavailable"]}"#), false),
            AddOrder::Ambiguous { .. }
        ));
        assert!(matches!(
            add_order(&reply(r#"{"error":["EService:Unavailable"]}"#), true),
            AddOrder::Transient { .. }
        ));
        assert!(matches!(
            add_order(
                &Transport::Reply {
                    status: 502,
                    body: b"<html>".to_vec()
                },
                false
            ),
            AddOrder::Ambiguous { .. }
        ));
        assert!(matches!(
            add_order(&reply("not json"), false),
            AddOrder::Ambiguous { .. }
        ));
        assert!(matches!(
            add_order(&Transport::Lost("timed out".into()), false),
            AddOrder::Ambiguous { .. }
        ));
        assert!(matches!(
            add_order(&Transport::NotSent("refused".into()), false),
            AddOrder::Transient { .. }
        ));
        // A warning alone does not make an error.
        assert!(matches!(
            add_order(
                &reply(
                    r#"{"error":["WGeneral:Something"],"result":{"descr":{"order":"x"},"txid":["T"]}}"#
                ),
                false
            ),
            AddOrder::Placed { .. }
        ));
    }
}
