//! The alert body (contract 2.2): one JSON object with unique keys, every field known.
//!
//! [`parse_object`] only reads the JSON, so that authentication can look at `secret` before
//! anything else; [`Alert::from_object`] then checks every field and refuses unknown ones,
//! naming the field, so that a typo never trades a default.

use crate::decimal::Positive;
use crate::reject::FieldError;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The largest body accepted, in bytes (contract 2: `413` beyond).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Every field the contract defines, in contract order.
pub const FIELDS: &[&str] = &[
    "secret",
    "id",
    "timestamp",
    "action",
    "symbol",
    "side",
    "order_type",
    "volume",
    "quote_volume",
    "balance_percent",
    "price",
    "price2",
    "trigger",
    "time_in_force",
    "expire_time",
    "post_only",
    "reduce_only",
    "leverage",
    "stop_loss",
    "take_profit",
    "validate",
    "comment",
];

/// Fields of the contract this version parses but cannot act on yet; an alert using one is
/// refused (`422`, naming it) rather than traded without it.
const NOT_YET_SUPPORTED: &[&str] = &[
    "quote_volume",
    "balance_percent",
    "price2",
    "trigger",
    "time_in_force",
    "expire_time",
    "post_only",
    "reduce_only",
    "leverage",
    "stop_loss",
    "take_profit",
];

/// A JSON object's top-level members, in body order, keys unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Object(Vec<(String, Value)>);

impl Object {
    /// The value of member `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The body `secret`, when it is a string.
    pub fn secret(&self) -> Option<&str> {
        self.get("secret").and_then(Value::as_str)
    }
}

/// Reads `body` as exactly one JSON object whose top-level keys are unique. `None` for
/// anything else: not UTF-8, not JSON, not an object, trailing data, a repeated key.
pub fn parse_object(body: &[u8]) -> Option<Object> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let object = de.deserialize_map(ObjectVisitor).ok()?;
    de.end().ok()?;
    Some(object)
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        let mut members: Vec<(String, Value)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom("repeated key"));
            }
            members.push((key, value));
        }
        Ok(Object(members))
    }
}

/// What the alert asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Place an order (the default).
    Order,
    /// Sell the whole free base balance of `symbol`.
    Close,
    /// Cancel every open order.
    CancelAll,
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Buy the base asset.
    Buy,
    /// Sell the base asset.
    Sell,
}

impl Side {
    /// Kraken's `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// The contract's order types, spelled as Kraken spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderType {
    /// `market` (the default).
    Market,
    /// `limit`.
    Limit,
    /// `stop-loss`.
    StopLoss,
    /// `take-profit`.
    TakeProfit,
    /// `stop-loss-limit`.
    StopLossLimit,
    /// `take-profit-limit`.
    TakeProfitLimit,
    /// `trailing-stop`.
    TrailingStop,
    /// `trailing-stop-limit`.
    TrailingStopLimit,
}

impl OrderType {
    const ALL: [OrderType; 8] = [
        OrderType::Market,
        OrderType::Limit,
        OrderType::StopLoss,
        OrderType::TakeProfit,
        OrderType::StopLossLimit,
        OrderType::TakeProfitLimit,
        OrderType::TrailingStop,
        OrderType::TrailingStopLimit,
    ];

    /// Kraken's `ordertype` value.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
            OrderType::StopLoss => "stop-loss",
            OrderType::TakeProfit => "take-profit",
            OrderType::StopLossLimit => "stop-loss-limit",
            OrderType::TakeProfitLimit => "take-profit-limit",
            OrderType::TrailingStop => "trailing-stop",
            OrderType::TrailingStopLimit => "trailing-stop-limit",
        }
    }
}

/// A validated alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Idempotency key.
    pub id: Option<String>,
    /// When the alert fired, in Unix seconds.
    pub timestamp: Option<i64>,
    /// What to do.
    pub action: Action,
    /// The market as the alert spells it, upper-cased.
    pub symbol: Option<String>,
    /// Buy or sell.
    pub side: Option<Side>,
    /// The order type.
    pub order_type: OrderType,
    /// Base-asset volume.
    pub volume: Option<Positive>,
    /// Limit or trigger price.
    pub price: Option<Positive>,
    /// A dry run of this alert.
    pub validate: bool,
    /// Kept in the audit event only.
    pub comment: Option<String>,
}

impl Alert {
    /// Checks every member of an authenticated body.
    pub fn from_object(object: &Object) -> Result<Alert, FieldError> {
        for (key, _) in &object.0 {
            if !FIELDS.contains(&key.as_str()) {
                return Err(FieldError::new(
                    printable(key),
                    "unknown field; see the alert fields in the README",
                ));
            }
        }
        for &name in NOT_YET_SUPPORTED {
            if object.get(name).is_some() {
                return Err(FieldError::new(name, "not supported by this version"));
            }
        }
        if let Some(v) = object.get("secret") {
            if !v.is_string() {
                return Err(FieldError::new("secret", "must be a string"));
            }
        }

        let id = text(object, "id", 64)?;
        if let Some(id) = &id {
            let ok = id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
            if !ok {
                return Err(FieldError::new(
                    "id",
                    "1 to 64 characters of A-Z a-z 0-9 . _ : -",
                ));
            }
        }

        let timestamp = match object.get("timestamp") {
            None => None,
            Some(v) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                Some(crate::time::parse_timestamp(&text).ok_or_else(|| {
                    FieldError::new(
                        "timestamp",
                        "RFC 3339 (e.g. {{timenow}}) or Unix seconds or milliseconds",
                    )
                })?)
            }
        };

        let action = match text(object, "action", 32)?.map(|s| s.to_ascii_lowercase()) {
            None => Action::Order,
            Some(a) => match a.as_str() {
                "order" => Action::Order,
                "close" => Action::Close,
                "cancel_all" => Action::CancelAll,
                _ => {
                    return Err(FieldError::new(
                        "action",
                        "must be order, close or cancel_all",
                    ));
                }
            },
        };

        let symbol = text(object, "symbol", 32)?.map(|s| s.trim().to_ascii_uppercase());

        let side = match text(object, "side", 8)?.map(|s| s.trim().to_ascii_lowercase()) {
            None => None,
            Some(s) => Some(match s.as_str() {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => return Err(FieldError::new("side", "must be buy or sell")),
            }),
        };

        let order_type =
            match text(object, "order_type", 32)?.map(|s| s.trim().to_ascii_lowercase()) {
                None => OrderType::Market,
                Some(t) => *OrderType::ALL
                    .iter()
                    .find(|o| o.as_str() == t)
                    .ok_or_else(|| {
                        FieldError::new(
                            "order_type",
                            "must be market, limit, stop-loss, take-profit, stop-loss-limit, \
                         take-profit-limit, trailing-stop or trailing-stop-limit",
                        )
                    })?,
            };

        let volume = decimal(object, "volume")?;
        let price = decimal(object, "price")?;
        let validate = boolean(object, "validate")?.unwrap_or(false);
        let comment = text(object, "comment", 256)?;

        Ok(Alert {
            id,
            timestamp,
            action,
            symbol,
            side,
            order_type,
            volume,
            price,
            validate,
            comment,
        })
    }
}

/// A short, printable rendering of an untrusted key for an error body.
fn printable(key: &str) -> String {
    let mut out: String = key.chars().filter(|c| !c.is_control()).take(64).collect();
    if key.chars().count() > 64 {
        out.push('…');
    }
    out
}

fn text(object: &Object, name: &str, max_chars: usize) -> Result<Option<String>, FieldError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => {
            if s.is_empty() {
                Err(FieldError::new(name, "must not be empty"))
            } else if s.chars().count() > max_chars {
                Err(FieldError::new(
                    name,
                    format!("longer than {max_chars} characters"),
                ))
            } else if s.chars().any(char::is_control) {
                Err(FieldError::new(name, "contains control characters"))
            } else {
                Ok(Some(s.clone()))
            }
        }
        Some(_) => Err(FieldError::new(name, "must be a string")),
    }
}

fn decimal(object: &Object, name: &str) -> Result<Option<Positive>, FieldError> {
    let text = match object.get(name) {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        // `arbitrary_precision` keeps the number's exact source text.
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(FieldError::new(name, "must be a decimal string or number")),
    };
    Positive::parse(&text)
        .map(Some)
        .map_err(|reason| FieldError::new(name, reason))
}

fn boolean(object: &Object, name: &str) -> Result<Option<bool>, FieldError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(FieldError::new(name, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(body: &str) -> Result<Alert, FieldError> {
        Alert::from_object(&parse_object(body.as_bytes()).expect("object"))
    }

    fn field_of(body: &str) -> String {
        alert(body).unwrap_err().field
    }

    #[test]
    fn reads_only_one_object_with_unique_keys() {
        assert!(parse_object(br#"{"a":1}"#).is_some());
        assert!(parse_object(b" {\"a\":1} \n").is_some());
        for bad in [
            &b""[..],
            b"[]",
            b"1",
            b"\"x\"",
            b"null",
            br#"{"a":1}{"b":2}"#,
            br#"{"a":1} x"#,
            br#"{"a":1,"a":2}"#,
            br#"{"a":NaN}"#,
            br#"{"a":Infinity}"#,
            b"{\"a\":\"\xff\"}",
            br#"{"a":1,}"#,
        ] {
            assert!(
                parse_object(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn secret_is_read_before_validation() {
        let o = parse_object(br#"{"secret":"s3","bogus":1}"#).unwrap();
        assert_eq!(o.secret(), Some("s3"));
        assert_eq!(parse_object(br#"{"secret":5}"#).unwrap().secret(), None);
    }

    #[test]
    fn a_full_limit_alert() {
        let a = alert(
            r#"{"secret":"x","id":"strat-1.long:2025-01-15T14:30:05Z","timestamp":"2025-01-15T14:30:05Z",
                "action":"ORDER","symbol":"xbtusd","side":"Buy","order_type":"LIMIT",
                "volume":"1.250","price":37500,"validate":"true","comment":"entry"}"#,
        )
        .unwrap();
        assert_eq!(a.id.as_deref(), Some("strat-1.long:2025-01-15T14:30:05Z"));
        assert_eq!(a.timestamp, Some(1_736_951_405));
        assert_eq!(a.action, Action::Order);
        assert_eq!(a.symbol.as_deref(), Some("XBTUSD"));
        assert_eq!(a.side, Some(Side::Buy));
        assert_eq!(a.order_type, OrderType::Limit);
        assert_eq!(a.volume.unwrap().to_plain(), "1.25");
        assert_eq!(a.price.unwrap().to_plain(), "37500");
        assert!(a.validate);
        assert_eq!(a.comment.as_deref(), Some("entry"));
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let a = alert(r#"{"volume":0.1000000000000000055511151231}"#).unwrap();
        assert_eq!(
            a.volume.unwrap().to_plain(),
            "0.1000000000000000055511151231"
        );
        // More digits than an exact decimal holds are refused, never rounded.
        assert_eq!(
            field_of(r#"{"volume":0.1000000000000000055511151231257827}"#),
            "volume"
        );
        let a = alert(r#"{"volume":0.3}"#).unwrap();
        assert_eq!(a.volume.unwrap().to_plain(), "0.3");
    }

    #[test]
    fn defaults() {
        let a = alert("{}").unwrap();
        assert_eq!(a.action, Action::Order);
        assert_eq!(a.order_type, OrderType::Market);
        assert!(!a.validate);
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(field_of(r#"{"volumee":"1"}"#), "volumee");
        assert_eq!(field_of(r#"{"side":"long"}"#), "side");
        assert_eq!(field_of(r#"{"volume":"-1"}"#), "volume");
        assert_eq!(field_of(r#"{"volume":-1}"#), "volume");
        assert_eq!(field_of(r#"{"volume":0}"#), "volume");
        assert_eq!(field_of(r#"{"volume":1e-3}"#), "volume");
        assert_eq!(field_of(r#"{"volume":true}"#), "volume");
        assert_eq!(field_of(r#"{"price":"NaN"}"#), "price");
        assert_eq!(field_of(r#"{"order_type":"iceberg"}"#), "order_type");
        assert_eq!(field_of(r#"{"action":"buy"}"#), "action");
        assert_eq!(field_of(r#"{"id":"has space"}"#), "id");
        assert_eq!(field_of(&format!(r#"{{"id":"{}"}}"#, "a".repeat(65))), "id");
        assert_eq!(field_of(r#"{"timestamp":"yesterday"}"#), "timestamp");
        assert_eq!(field_of(r#"{"validate":"yes"}"#), "validate");
        assert_eq!(
            field_of(&format!(r#"{{"comment":"{}"}}"#, "c".repeat(257))),
            "comment"
        );
        assert_eq!(field_of(r#"{"comment":"a\u0000b"}"#), "comment");
        assert_eq!(field_of(r#"{"symbol":7}"#), "symbol");
        assert_eq!(field_of(r#"{"secret":7}"#), "secret");
        assert_eq!(field_of(r#"{"quote_volume":"10"}"#), "quote_volume");
    }

    #[test]
    fn unknown_field_names_are_made_printable() {
        let e = alert(&format!(r#"{{"x\u0007{}":1}}"#, "y".repeat(100))).unwrap_err();
        assert!(!e.field.chars().any(char::is_control));
        assert!(e.field.chars().count() <= 65);
    }
}
