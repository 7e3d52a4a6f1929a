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
    "position",
    "position_quote",
    "position_percent",
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
    /// Trade the difference to a target holding (contract 2.6).
    Position,
}

impl Action {
    /// The alert's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Order => "order",
            Action::Close => "close",
            Action::CancelAll => "cancel_all",
            Action::Position => "position",
        }
    }
}

/// Where a position alert wants the holding of the pair's base asset (contract 2.6):
/// exactly one of the three target fields, signed (a strategy gone short is negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `position`: base units.
    Base(rust_decimal::Decimal),
    /// `position_quote`: worth this much of the quote currency at the last trade.
    Quote(rust_decimal::Decimal),
    /// `position_percent`: this share, at most 100, of the pair's holdings (base at the
    /// last trade plus quote).
    Percent(rust_decimal::Decimal),
}

impl Target {
    /// The field the target was given in.
    pub fn field(self) -> &'static str {
        match self {
            Target::Base(_) => "position",
            Target::Quote(_) => "position_quote",
            Target::Percent(_) => "position_percent",
        }
    }

    /// The value as given.
    pub fn value(self) -> rust_decimal::Decimal {
        match self {
            Target::Base(v) | Target::Quote(v) | Target::Percent(v) => v,
        }
    }
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

/// How much to trade: exactly one of the contract's three sizing fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// `volume`: base units.
    Volume(Positive),
    /// `quote_volume`: an amount of the quote currency.
    Quote(Positive),
    /// `balance_percent`: a percentage in (0, 100] of the free balance.
    BalancePercent(Positive),
}

impl Size {
    /// The field the size was given in.
    pub fn field(self) -> &'static str {
        match self {
            Size::Volume(_) => "volume",
            Size::Quote(_) => "quote_volume",
            Size::BalancePercent(_) => "balance_percent",
        }
    }
}

/// A price as the alert gives it: absolute, or relative to the last trade as Kraken allows
/// (`+5`, `-1.5%`, `#2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Price {
    /// An absolute price.
    Absolute(Positive),
    /// Kraken's relative form, kept as text: `+`, `-` or `#`, a decimal, optionally `%`.
    Relative {
        /// `+`, `-` or `#`.
        sign: char,
        /// The offset.
        amount: Positive,
        /// A percentage rather than a price difference.
        percent: bool,
    },
}

impl Price {
    /// The text Kraken receives.
    pub fn to_kraken(&self) -> String {
        match self {
            Price::Absolute(p) => p.to_plain(),
            Price::Relative {
                sign,
                amount,
                percent,
            } => format!(
                "{sign}{}{}",
                amount.to_plain(),
                if *percent { "%" } else { "" }
            ),
        }
    }

    /// The absolute price, if this is one.
    pub fn absolute(&self) -> Option<Positive> {
        match self {
            Price::Absolute(p) => Some(*p),
            Price::Relative { .. } => None,
        }
    }
}

/// `trigger`: which price triggers stop and take-profit orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The last trade (the default).
    Last,
    /// The index price.
    Index,
}

/// `time_in_force`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeInForce {
    /// Good till cancelled (the default).
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Good till `expire_time`.
    Gtd,
}

/// A conditional close attached to the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// `stop_loss`: a stop-loss at this price.
    StopLoss(Positive),
    /// `take_profit`: a take-profit at this price.
    TakeProfit(Positive),
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
    /// How much.
    pub size: Option<Size>,
    /// Where to be, for `action: position`.
    pub target: Option<Target>,
    /// Limit or trigger price.
    pub price: Option<Price>,
    /// The limit price of `*-limit` types.
    pub price2: Option<Price>,
    /// Which price triggers.
    pub trigger: Trigger,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Expiry for GTD: Unix seconds, or `+<seconds>` as Kraken takes it.
    pub expire_time: Option<String>,
    /// Post-only.
    pub post_only: bool,
    /// Reduce-only (margin).
    pub reduce_only: bool,
    /// Margin leverage, e.g. `2`.
    pub leverage: Option<u32>,
    /// A conditional close.
    pub close: Option<Close>,
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
                "position" => Action::Position,
                _ => {
                    return Err(FieldError::new(
                        "action",
                        "must be order, close, cancel_all or position",
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

        let sizes = [
            decimal(object, "volume")?.map(Size::Volume),
            decimal(object, "quote_volume")?.map(Size::Quote),
            decimal(object, "balance_percent")?.map(Size::BalancePercent),
        ];
        let mut given = sizes.iter().flatten();
        let size = given.next().copied();
        if let Some(second) = given.next() {
            return Err(FieldError::new(
                second.field(),
                "give exactly one of volume, quote_volume, balance_percent",
            ));
        }
        if let Some(Size::BalancePercent(p)) = size {
            if p.value() > rust_decimal::Decimal::ONE_HUNDRED {
                return Err(FieldError::new("balance_percent", "must be at most 100"));
            }
        }
        let targets = [
            signed(object, "position")?.map(Target::Base),
            signed(object, "position_quote")?.map(Target::Quote),
            signed(object, "position_percent")?.map(Target::Percent),
        ];
        let mut given = targets.iter().flatten();
        let target = given.next().copied();
        if let Some(second) = given.next() {
            return Err(FieldError::new(
                second.field(),
                "give exactly one of position, position_quote, position_percent",
            ));
        }
        if let Some(Target::Percent(p)) = target {
            if p > rust_decimal::Decimal::ONE_HUNDRED {
                return Err(FieldError::new("position_percent", "must be at most 100"));
            }
        }
        match (action, target) {
            (Action::Position, None) => {
                return Err(FieldError::new(
                    "position",
                    "give one of position, position_quote, position_percent",
                ))
            }
            (Action::Position, Some(_)) => {
                // The bridge trades the difference: a side or a size would contradict it.
                let sizing = ["side", "volume", "quote_volume", "balance_percent"];
                let margin = ["leverage", "reduce_only", "stop_loss", "take_profit"];
                if let Some(f) = sizing.into_iter().find(|f| object.get(f).is_some()) {
                    return Err(FieldError::new(
                        f,
                        "not used by position alerts: the bridge trades the difference to the target",
                    ));
                }
                if let Some(f) = margin.into_iter().find(|f| object.get(f).is_some()) {
                    return Err(FieldError::new(
                        f,
                        "not used by position alerts: the target is a spot holding",
                    ));
                }
                if !matches!(order_type, OrderType::Market | OrderType::Limit) {
                    return Err(FieldError::new(
                        "order_type",
                        "a position alert trades with a market (default) or limit order",
                    ));
                }
            }
            (_, Some(t)) => {
                return Err(FieldError::new(t.field(), "only with action position"));
            }
            (_, None) => {}
        }
        let price2 = price_field(object, "price2")?;
        let price = price_field(object, "price")?;
        let trigger = match text(object, "trigger", 8)?.map(|s| s.to_ascii_lowercase()) {
            None => Trigger::Last,
            Some(t) if t == "last" => Trigger::Last,
            Some(t) if t == "index" => Trigger::Index,
            Some(_) => return Err(FieldError::new("trigger", "must be last or index")),
        };
        let time_in_force = match text(object, "time_in_force", 8)?.map(|s| s.to_ascii_uppercase())
        {
            None => TimeInForce::Gtc,
            Some(t) if t == "GTC" => TimeInForce::Gtc,
            Some(t) if t == "IOC" => TimeInForce::Ioc,
            Some(t) if t == "GTD" => TimeInForce::Gtd,
            Some(_) => return Err(FieldError::new("time_in_force", "must be GTC, IOC or GTD")),
        };
        let expire_time = match object.get("expire_time") {
            None => None,
            Some(v) => {
                let t = match v {
                    Value::String(s) => s.trim().to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                let digits = t.strip_prefix('+').unwrap_or(&t);
                if digits.is_empty()
                    || digits.len() > 12
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(FieldError::new(
                        "expire_time",
                        "Unix seconds, or +<seconds> from now",
                    ));
                }
                Some(t)
            }
        };
        let post_only = boolean(object, "post_only")?.unwrap_or(false);
        let reduce_only = boolean(object, "reduce_only")?.unwrap_or(false);
        let leverage = match object.get("leverage") {
            None => None,
            Some(v) => {
                let t = match v {
                    Value::String(s) => s.trim().trim_end_matches(":1").to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                match t.parse::<u32>() {
                    Ok(n) if (2..=10).contains(&n) => Some(n),
                    _ => return Err(FieldError::new("leverage", "a whole number from 2 to 10")),
                }
            }
        };
        let close = match (
            decimal(object, "stop_loss")?,
            decimal(object, "take_profit")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "take_profit",
                    "give at most one of stop_loss, take_profit",
                ));
            }
            (Some(p), None) => Some(Close::StopLoss(p)),
            (None, Some(p)) => Some(Close::TakeProfit(p)),
            (None, None) => None,
        };
        let validate = boolean(object, "validate")?.unwrap_or(false);
        let comment = text(object, "comment", 256)?;

        Ok(Alert {
            id,
            timestamp,
            action,
            symbol,
            side,
            order_type,
            size,
            target,
            price,
            price2,
            trigger,
            time_in_force,
            expire_time,
            post_only,
            reduce_only,
            leverage,
            close,
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

/// A signed decimal member (a position target).
fn signed(object: &Object, name: &str) -> Result<Option<rust_decimal::Decimal>, FieldError> {
    let text = match object.get(name) {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(FieldError::new(name, "must be a decimal string or number")),
    };
    crate::decimal::parse_signed(&text)
        .map(Some)
        .map_err(|reason| FieldError::new(name, reason))
}

fn price_field(object: &Object, name: &str) -> Result<Option<Price>, FieldError> {
    let text = match object.get(name) {
        None => return Ok(None),
        Some(Value::Number(n)) => {
            let p = Positive::parse(&n.to_string()).map_err(|r| FieldError::new(name, r))?;
            return Ok(Some(Price::Absolute(p)));
        }
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err(FieldError::new(name, "must be a decimal string or number")),
    };
    let (sign, rest) = match text.chars().next() {
        Some(c @ ('+' | '-' | '#')) => (Some(c), &text[1..]),
        _ => (None, text.as_str()),
    };
    let (rest, percent) = match rest.strip_suffix('%') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let amount = Positive::parse(rest).map_err(|_| {
        FieldError::new(
            name,
            "a price such as 37500.5, or relative to the last trade: +50, -1.5%, #2",
        )
    })?;
    Ok(Some(match sign {
        None if !percent => Price::Absolute(amount),
        None => {
            return Err(FieldError::new(
                name,
                "a percentage needs a sign: +1.5% or -1.5%",
            ));
        }
        Some(sign) => Price::Relative {
            sign,
            amount,
            percent,
        },
    }))
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
        assert_eq!(a.size, Some(Size::Volume(Positive::parse("1.25").unwrap())));
        assert_eq!(a.price.unwrap().to_kraken(), "37500");
        assert!(a.validate);
        assert_eq!(a.comment.as_deref(), Some("entry"));
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let vol = |a: Alert| match a.size {
            Some(Size::Volume(v)) => v.to_plain(),
            other => panic!("{other:?}"),
        };
        let a = alert(r#"{"volume":0.1000000000000000055511151231}"#).unwrap();
        assert_eq!(vol(a), "0.1000000000000000055511151231");
        // More digits than an exact decimal holds are refused, never rounded.
        assert_eq!(
            field_of(r#"{"volume":0.1000000000000000055511151231257827}"#),
            "volume"
        );
        let a = alert(r#"{"volume":0.3}"#).unwrap();
        assert_eq!(vol(a), "0.3");
    }

    #[test]
    fn every_sizing_mode_and_price_form() {
        let a = alert(r#"{"quote_volume":"100"}"#).unwrap();
        assert!(matches!(a.size, Some(Size::Quote(_))));
        let a = alert(r#"{"balance_percent":100}"#).unwrap();
        assert!(matches!(a.size, Some(Size::BalancePercent(_))));
        for (text, kraken) in [
            ("+50", "+50"),
            ("-1.50%", "-1.5%"),
            ("#2", "#2"),
            ("37500.10", "37500.1"),
        ] {
            let a = alert(&format!(r#"{{"price":"{text}","price2":"{text}"}}"#)).unwrap();
            assert_eq!(a.price.unwrap().to_kraken(), kraken);
            assert_eq!(a.price2.unwrap().to_kraken(), kraken);
        }
        let a = alert(
            r#"{"trigger":"index","time_in_force":"gtd","expire_time":"+3600","post_only":true,
                "reduce_only":"true","leverage":"3:1","stop_loss":"60000"}"#,
        )
        .unwrap();
        assert_eq!(a.trigger, Trigger::Index);
        assert_eq!(a.time_in_force, TimeInForce::Gtd);
        assert_eq!(a.expire_time.as_deref(), Some("+3600"));
        assert!(a.post_only && a.reduce_only);
        assert_eq!(a.leverage, Some(3));
        assert!(matches!(a.close, Some(Close::StopLoss(_))));
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
        assert_eq!(
            field_of(r#"{"volume":"1","quote_volume":"10"}"#),
            "quote_volume"
        );
        assert_eq!(
            field_of(r#"{"balance_percent":"100.01"}"#),
            "balance_percent"
        );
        assert_eq!(field_of(r#"{"price2":"1%"}"#), "price2");
        assert_eq!(field_of(r#"{"price":"+-1"}"#), "price");
        assert_eq!(field_of(r#"{"trigger":"mark"}"#), "trigger");
        assert_eq!(field_of(r#"{"time_in_force":"FOK"}"#), "time_in_force");
        assert_eq!(field_of(r#"{"expire_time":"tomorrow"}"#), "expire_time");
        assert_eq!(field_of(r#"{"leverage":"100"}"#), "leverage");
        assert_eq!(
            field_of(r#"{"stop_loss":"1","take_profit":"2"}"#),
            "take_profit"
        );
        assert_eq!(field_of(r#"{"post_only":"maybe"}"#), "post_only");
    }

    #[test]
    fn unknown_field_names_are_made_printable() {
        let e = alert(&format!(r#"{{"x\u0007{}":1}}"#, "y".repeat(100))).unwrap_err();
        assert!(!e.field.chars().any(char::is_control));
        assert!(e.field.chars().count() <= 65);
    }
}
