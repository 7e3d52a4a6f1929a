//! From a validated alert to the exact AddOrder Kraken will receive (contract 2.2, 2.3).

use crate::alert::{Action, Alert, OrderType, Side};
use crate::decimal::Positive;
use crate::idempotency::DedupeKey;
use crate::reject::FieldError;

/// One AddOrder, every value final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlan {
    /// Kraken pair id or altname.
    pub pair: String,
    /// Buy or sell.
    pub side: Side,
    /// Kraken order type.
    pub order_type: OrderType,
    /// Base-asset volume.
    pub volume: Positive,
    /// Limit price, for `limit`.
    pub price: Option<Positive>,
    /// Deterministic client order id.
    pub cl_ord_id: String,
    /// Sent with `validate=true`: nothing trades.
    pub validate: bool,
}

impl OrderPlan {
    /// AddOrder's parameters (the nonce and `otp` are added when the call is signed).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("pair", self.pair.clone()),
            ("type", self.side.as_str().to_string()),
            ("ordertype", self.order_type.as_str().to_string()),
            ("volume", self.volume.to_plain()),
        ];
        if let Some(price) = self.price {
            p.push(("price", price.to_plain()));
        }
        p.push(("cl_ord_id", self.cl_ord_id.clone()));
        if self.validate {
            p.push(("validate", "true".to_string()));
        }
        p
    }
}

/// Plans the order an alert asks for. `dry_run` is the setting of the same name.
pub fn plan(alert: &Alert, dry_run: bool, key: &DedupeKey) -> Result<OrderPlan, FieldError> {
    if alert.action != Action::Order {
        return Err(FieldError::new(
            "action",
            "close and cancel_all are not supported by this version",
        ));
    }
    let symbol = alert
        .symbol
        .as_deref()
        .ok_or_else(|| FieldError::new("symbol", "required"))?;
    let pair = kraken_pair_name(symbol)?;
    let side = alert
        .side
        .ok_or_else(|| FieldError::new("side", "required: buy or sell"))?;
    let volume = alert
        .volume
        .ok_or_else(|| FieldError::new("volume", "required"))?;
    let price = match alert.order_type {
        OrderType::Market => None,
        OrderType::Limit => Some(
            alert
                .price
                .ok_or_else(|| FieldError::new("price", "required for limit orders"))?,
        ),
        _ => {
            return Err(FieldError::new(
                "order_type",
                "only market and limit are supported by this version",
            ));
        }
    };
    Ok(OrderPlan {
        pair,
        side,
        order_type: alert.order_type,
        volume,
        price,
        cl_ord_id: key.cl_ord_id(),
        validate: alert.validate || dry_run,
    })
}

/// This version takes the symbol as a Kraken pair id or altname (`XBTUSD`, `XXBTZUSD`) or
/// wsname (`XBT/USD`).
fn kraken_pair_name(symbol: &str) -> Result<String, FieldError> {
    let slash = symbol.bytes().filter(|&b| b == b'/').count();
    let ok = (3..=20).contains(&symbol.len())
        && slash <= 1
        && !symbol.starts_with('/')
        && !symbol.ends_with('/')
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'/');
    if ok {
        Ok(symbol.to_string())
    } else {
        Err(FieldError::new(
            "symbol",
            "give the Kraken pair name, e.g. XBTUSD or XBT/USD",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::parse_object;

    fn plan_of(body: &str, dry_run: bool) -> Result<OrderPlan, FieldError> {
        let alert = Alert::from_object(&parse_object(body.as_bytes()).unwrap()).unwrap();
        plan(
            &alert,
            dry_run,
            &DedupeKey::new(alert.id.as_deref(), body.as_bytes()),
        )
    }

    #[test]
    fn limit_order_params() {
        let p = plan_of(
            r#"{"id":"a1","symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"1.25","price":"37500"}"#,
            false,
        )
        .unwrap();
        let names: Vec<_> = p.params().iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            names,
            [
                "pair=XBTUSD".to_string(),
                "type=buy".into(),
                "ordertype=limit".into(),
                "volume=1.25".into(),
                "price=37500".into(),
                format!("cl_ord_id={}", DedupeKey::Id("a1".into()).cl_ord_id()),
            ]
        );
    }

    #[test]
    fn market_orders_ignore_price_and_dry_run_validates() {
        let p = plan_of(
            r#"{"symbol":"xbt/usd","side":"SELL","volume":0.5,"price":"1"}"#,
            true,
        )
        .unwrap();
        assert_eq!(p.pair, "XBT/USD");
        assert_eq!(p.price, None);
        assert!(p.validate);
        assert!(p.params().contains(&("validate", "true".into())));
    }

    #[test]
    fn missing_or_unsupported() {
        for (body, field) in [
            (r#"{"side":"buy","volume":"1"}"#, "symbol"),
            (r#"{"symbol":"XBTUSD","volume":"1"}"#, "side"),
            (r#"{"symbol":"XBTUSD","side":"buy"}"#, "volume"),
            (
                r#"{"symbol":"XBTUSD","side":"buy","volume":"1","order_type":"limit"}"#,
                "price",
            ),
            (
                r#"{"symbol":"XBTUSD","side":"buy","volume":"1","order_type":"stop-loss","price":"1"}"#,
                "order_type",
            ),
            (r#"{"action":"close","symbol":"XBTUSD"}"#, "action"),
            (
                r#"{"symbol":"KRAKEN:XBTUSD","side":"buy","volume":"1"}"#,
                "symbol",
            ),
            (
                r#"{"symbol":"BTCUSDT.P","side":"buy","volume":"1"}"#,
                "symbol",
            ),
        ] {
            assert_eq!(plan_of(body, false).unwrap_err().field, field, "{body}");
        }
    }
}
