//! From a validated alert and the market to the exact AddOrder Kraken will receive
//! (contract 2.2 and 2.3): sizing, rounding, minimums, risk limits and every order type's
//! rules, checked before Kraken is called.

use crate::alert::{
    Action, Alert, Close, OrderType, Price, Side, Size, Target, TimeInForce, Trigger,
};
use crate::config::PositionNegative;
use crate::decimal::Positive;
use crate::idempotency::DedupeKey;
use crate::kraken::pairs::Pair;
use crate::reject::{FieldError, Reject};
use crate::rounding::{price_to_tick, volume_down, Toward};
use rust_decimal::Decimal;

/// What the market looks like, as far as the plan needs it.
#[derive(Debug, Clone)]
pub struct Market<'a> {
    /// The resolved pair.
    pub pair: &'a Pair,
    /// The last trade price (`Ticker`), when it was needed.
    pub last: Option<Decimal>,
    /// Free balances of the pair's base and quote assets (`BalanceEx`), when needed.
    pub free_base: Option<Decimal>,
    /// Free quote balance.
    pub free_quote: Option<Decimal>,
    /// The whole balance of the base asset, free and held by open orders (position alerts).
    pub whole_base: Option<Decimal>,
    /// The whole balance of the quote asset (position alerts by `position_percent`).
    pub whole_quote: Option<Decimal>,
}

/// The settings that limit an order.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_order_value`, in the quote currency.
    pub max_order_value: Option<Decimal>,
    /// `dry_run`.
    pub dry_run: bool,
    /// The holding of the pair's base asset never sold (`position_reserve`): `close` and
    /// `balance_percent` sells size from the free balance less this.
    pub reserve: Decimal,
    /// `position_negative`: what a negative position target does.
    pub position_negative: PositionNegative,
    /// `max_position_value`: cap on a position target, in the quote currency.
    pub max_position_value: Option<Decimal>,
}

/// What the plan needs fetched before it can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The last trade price.
    pub ticker: bool,
    /// Free balances.
    pub balance: bool,
}

/// One AddOrder, every value final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlan {
    /// Kraken pair altname.
    pub pair: String,
    /// Buy or sell.
    pub side: Side,
    /// Kraken order type.
    pub order_type: OrderType,
    /// Base volume, rounded.
    pub volume: String,
    /// `price`, as sent.
    pub price: Option<String>,
    /// `price2`, as sent.
    pub price2: Option<String>,
    /// The other parameters (trigger, time in force, flags, close...).
    pub extra: Vec<(&'static str, String)>,
    /// Deterministic client order id.
    pub cl_ord_id: String,
    /// Sent with `validate=true`: nothing trades.
    pub validate: bool,
}

impl OrderPlan {
    /// AddOrder's parameters (nonce, deadline and `otp` are added when the call is signed).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("pair", self.pair.clone()),
            ("type", self.side.as_str().to_string()),
            ("ordertype", self.order_type.as_str().to_string()),
            ("volume", self.volume.clone()),
        ];
        if let Some(price) = &self.price {
            p.push(("price", price.clone()));
        }
        if let Some(price2) = &self.price2 {
            p.push(("price2", price2.clone()));
        }
        p.extend(self.extra.iter().cloned());
        p.push(("cl_ord_id", self.cl_ord_id.clone()));
        if self.validate {
            p.push(("validate", "true".to_string()));
        }
        p
    }
}

fn field(name: &str, reason: impl Into<String>) -> Reject {
    Reject::InvalidAlert(FieldError::new(name, reason))
}

/// The side an alert trades: `close` always sells.
pub fn side_of(alert: &Alert) -> Result<Side, Reject> {
    match alert.action {
        Action::Close => Ok(Side::Sell),
        _ => alert
            .side
            .ok_or_else(|| field("side", "required: buy or sell")),
    }
}

/// The absolute price the order's cost is judged at, if the alert gives one: the limit price,
/// or a stop's trigger, rounded as it will be sent.
fn reference_price(alert: &Alert, pair: Option<&Pair>) -> Option<Decimal> {
    let side = alert.side.unwrap_or(Side::Buy);
    let (p, toward) = match alert.order_type {
        OrderType::Limit => (alert.price.as_ref(), limit_toward(side)),
        OrderType::StopLoss | OrderType::TakeProfit => {
            (alert.price.as_ref(), trigger_toward(alert.order_type, side))
        }
        OrderType::StopLossLimit | OrderType::TakeProfitLimit => {
            (alert.price2.as_ref(), limit_toward(side))
        }
        OrderType::Market | OrderType::TrailingStop | OrderType::TrailingStopLimit => return None,
    };
    let p = p.and_then(Price::absolute)?.value();
    Some(match pair {
        Some(pair) => price_to_tick(p, pair.tick_size, pair.pair_decimals, toward),
        None => p,
    })
}

/// What must be fetched for this alert.
pub fn needs(alert: &Alert) -> Needs {
    // A position alert prices its target at the last trade and reads the whole balance.
    let close = matches!(alert.action, Action::Close | Action::Position);
    Needs {
        ticker: close || reference_price(alert, None).is_none(),
        balance: close || matches!(alert.size, Some(Size::BalancePercent(_))),
    }
}

/// Checks the order-type rules Kraken would enforce, naming the field.
fn check_combination(alert: &Alert) -> Result<(), Reject> {
    use OrderType::*;
    let t = alert.order_type;
    let needs_price = !matches!(t, Market);
    let needs_price2 = matches!(t, StopLossLimit | TakeProfitLimit | TrailingStopLimit);
    if needs_price && alert.price.is_none() {
        return Err(field(
            "price",
            format!("required for {} orders", t.as_str()),
        ));
    }
    if needs_price2 && alert.price2.is_none() {
        return Err(field(
            "price2",
            format!("required for {} orders (the limit price)", t.as_str()),
        ));
    }
    if !needs_price2 && alert.price2.is_some() {
        return Err(field(
            "price2",
            format!("not used by {} orders", t.as_str()),
        ));
    }
    if matches!(t, TrailingStop | TrailingStopLimit)
        && !matches!(alert.price, Some(Price::Relative { sign: '+', .. }))
    {
        return Err(field(
            "price",
            "trailing stops take a + offset, e.g. +50 or +1.5%",
        ));
    }
    if t == TrailingStopLimit
        && !matches!(
            alert.price2,
            Some(Price::Relative {
                sign: '+' | '-',
                ..
            })
        )
    {
        return Err(field(
            "price2",
            "trailing-stop-limit takes a + or - offset from the trigger",
        ));
    }
    if alert.post_only && t != Limit {
        return Err(field("post_only", "only limit orders can be post-only"));
    }
    if alert.trigger == Trigger::Index && matches!(t, Market | Limit) {
        return Err(field(
            "trigger",
            "only stop, take-profit and trailing orders have a trigger",
        ));
    }
    match (alert.time_in_force, &alert.expire_time) {
        (TimeInForce::Gtd, None) => {
            return Err(field("expire_time", "required with time_in_force GTD"))
        }
        (TimeInForce::Gtc | TimeInForce::Ioc, Some(_)) => {
            return Err(field("expire_time", "only with time_in_force GTD"));
        }
        _ => {}
    }
    if alert.reduce_only && alert.leverage.is_none() {
        return Err(field(
            "reduce_only",
            "reduce-only orders are margin orders: give leverage",
        ));
    }
    Ok(())
}

/// The checks that need no market data, made before the dedupe record is claimed.
pub fn precheck(alert: &Alert) -> Result<(), Reject> {
    if alert.action == Action::CancelAll {
        return Ok(());
    }
    if alert.symbol.is_none() {
        return Err(field("symbol", "required"));
    }
    if alert.action == Action::Order {
        side_of(alert)?;
        if alert.size.is_none() {
            return Err(field(
                "volume",
                "give one of volume, quote_volume, balance_percent",
            ));
        }
        check_combination(alert)?;
    }
    if alert.action == Action::Position {
        check_combination(alert)?;
    }
    Ok(())
}

/// Rounds an absolute price the way that never makes the order more aggressive.
fn round_price(p: &Price, pair: &Pair, toward: Toward) -> String {
    match p {
        Price::Absolute(v) => {
            price_to_tick(v.value(), pair.tick_size, pair.pair_decimals, toward).to_string()
        }
        Price::Relative {
            sign,
            amount,
            percent,
        } => {
            let amount = if *percent {
                amount.value().round_dp(2)
            } else {
                price_to_tick(
                    amount.value(),
                    pair.tick_size,
                    pair.pair_decimals,
                    Toward::Up,
                )
            };
            format!(
                "{sign}{}{}",
                amount.normalize(),
                if *percent { "%" } else { "" }
            )
        }
    }
}

/// The direction a limit price may move: a buy pays less, a sell asks more.
fn limit_toward(side: Side) -> Toward {
    match side {
        Side::Buy => Toward::Down,
        Side::Sell => Toward::Up,
    }
}

/// The direction a trigger may move: away from firing sooner.
fn trigger_toward(t: OrderType, side: Side) -> Toward {
    let stop = matches!(t, OrderType::StopLoss | OrderType::StopLossLimit);
    match (stop, side) {
        // A buy stop fires when the price rises to it; a sell take-profit too.
        (true, Side::Buy) | (false, Side::Sell) => Toward::Up,
        (true, Side::Sell) | (false, Side::Buy) => Toward::Down,
    }
}

/// Plans the order an alert asks for.
pub fn plan(
    alert: &Alert,
    market: &Market,
    limits: Limits,
    key: &DedupeKey,
) -> Result<OrderPlan, Reject> {
    let pair = market.pair;
    let side = side_of(alert)?;
    let order_type = if alert.action == Action::Close {
        OrderType::Market
    } else {
        alert.order_type
    };
    if alert.action == Action::Order {
        check_combination(alert)?;
    }
    let reference = if alert.action == Action::Close {
        None
    } else {
        reference_price(alert, Some(pair))
    }
    .or(market.last)
    .filter(|p| *p > Decimal::ZERO);
    let price_needed = |why: &str| -> Reject {
        Reject::Unavailable {
            retry_after: 5,
            reason: format!("no last trade price for {} to {why}", pair.altname),
        }
    };

    // What a sell may take of the base asset: the free balance less the reserve (held
    // balance is already promised to open orders, so the reserve comes out of the free).
    let sellable = (market.free_base.unwrap_or_default() - limits.reserve).max(Decimal::ZERO);
    // Sizing, in base units, before rounding.
    let raw_volume = match (alert.action, alert.size) {
        (Action::Close, _) => sellable,
        (_, None) => {
            return Err(field(
                "volume",
                "give one of volume, quote_volume, balance_percent",
            ))
        }
        (_, Some(Size::Volume(v))) => v.value(),
        (_, Some(Size::Quote(q))) => {
            let price = reference.ok_or_else(|| price_needed("size quote_volume"))?;
            q.value()
                .checked_div(price)
                .ok_or_else(|| field("quote_volume", "too large for the price"))?
        }
        (_, Some(Size::BalancePercent(pct))) => {
            let share = pct.value() / Decimal::ONE_HUNDRED;
            let too_large = || field("balance_percent", "the balance is too large to size from");
            match side {
                Side::Sell => sellable.checked_mul(share).ok_or_else(too_large)?,
                Side::Buy => {
                    let quote = market
                        .free_quote
                        .unwrap_or_default()
                        .checked_mul(share)
                        .ok_or_else(too_large)?;
                    let price = reference.ok_or_else(|| price_needed("size balance_percent"))?;
                    quote.checked_div(price).ok_or_else(too_large)?
                }
            }
        }
    };
    let volume = volume_down(raw_volume, pair.lot_decimals);
    if alert.action == Action::Close && volume.is_zero() {
        return Err(Reject::BelowMinimum {
            field: "symbol",
            reason: if limits.reserve.is_zero() {
                format!("nothing to close: no free {} balance", pair.base)
            } else {
                format!(
                    "nothing to close: no free {} balance beyond position_reserve {}",
                    pair.base, limits.reserve
                )
            },
        });
    }
    let size_field = alert.size.map_or("volume", Size::field);
    if volume < pair.ordermin || volume.is_zero() {
        return Err(Reject::BelowMinimum {
            field: size_field,
            reason: format!(
                "{} volume {} (rounded down to {} decimals) is below Kraken's minimum {}",
                pair.altname,
                volume,
                pair.lot_decimals,
                pair.ordermin.normalize()
            ),
        });
    }
    if let Some(reference) = reference {
        let cost = volume
            .checked_mul(reference)
            .ok_or_else(|| field(size_field, "the order's cost is too large"))?;
        if cost < pair.costmin {
            return Err(Reject::BelowMinimum {
                field: size_field,
                reason: format!(
                    "{} order cost {} is below Kraken's minimum cost {}",
                    pair.altname,
                    cost.round_dp(8).normalize(),
                    pair.costmin.normalize()
                ),
            });
        }
        if let Some(max) = limits.max_order_value {
            if cost > max {
                return Err(Reject::LimitExceeded {
                    reason: format!(
                        "order value {} exceeds max_order_value {}",
                        cost.round_dp(8).normalize(),
                        max.normalize()
                    ),
                });
            }
        }
    } else if limits.max_order_value.is_some() {
        return Err(price_needed("check max_order_value"));
    }

    // Prices, rounded the safe way.
    let (price, price2) = match order_type {
        OrderType::Market => (None, None),
        OrderType::Limit => (
            alert
                .price
                .as_ref()
                .map(|p| round_price(p, pair, limit_toward(side))),
            None,
        ),
        OrderType::StopLoss | OrderType::TakeProfit | OrderType::TrailingStop => (
            alert
                .price
                .as_ref()
                .map(|p| round_price(p, pair, trigger_toward(order_type, side))),
            None,
        ),
        OrderType::StopLossLimit | OrderType::TakeProfitLimit | OrderType::TrailingStopLimit => (
            alert
                .price
                .as_ref()
                .map(|p| round_price(p, pair, trigger_toward(order_type, side))),
            alert
                .price2
                .as_ref()
                .map(|p| round_price(p, pair, limit_toward(side))),
        ),
    };

    let mut extra = Vec::new();
    if alert.trigger == Trigger::Index {
        extra.push(("trigger", "index".to_string()));
    }
    match alert.time_in_force {
        TimeInForce::Gtc => {}
        TimeInForce::Ioc => extra.push(("timeinforce", "IOC".to_string())),
        TimeInForce::Gtd => extra.push(("timeinforce", "GTD".to_string())),
    }
    if let Some(t) = &alert.expire_time {
        extra.push(("expiretm", t.clone()));
    }
    if alert.post_only {
        extra.push(("oflags", "post".to_string()));
    }
    if let Some(l) = alert.leverage {
        extra.push(("leverage", l.to_string()));
    }
    if alert.reduce_only {
        extra.push(("reduce_only", "true".to_string()));
    }
    if let Some(close) = alert.close {
        // The close sells what a buy bought (and buys back what a sell sold).
        let closing = match side {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        };
        let (ordertype, p) = match close {
            Close::StopLoss(p) => (OrderType::StopLoss, p),
            Close::TakeProfit(p) => (OrderType::TakeProfit, p),
        };
        let toward = trigger_toward(ordertype, closing);
        extra.push(("close[ordertype]", ordertype.as_str().to_string()));
        extra.push((
            "close[price]",
            round_price(&Price::Absolute(p), pair, toward),
        ));
    }

    Ok(OrderPlan {
        pair: pair.altname.clone(),
        side,
        order_type,
        volume: volume.normalize().to_string(),
        price,
        price2,
        extra,
        cl_ord_id: key.cl_ord_id(),
        validate: alert.validate || limits.dry_run,
    })
}

/// Where a position alert's holding is, where it should be, and the order that moves it
/// there (contract 2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionPlan {
    /// The holding now: the base asset's whole balance less the reserve, never below zero.
    pub position: Decimal,
    /// The target, in base units, rounded toward zero to the pair's lot decimals.
    pub target: Decimal,
    /// The order that trades the difference; `None`: the difference is below the pair's
    /// minimums (`in_position`).
    pub order: Option<OrderPlan>,
}

/// Plans a position alert: the difference between the target and the holding Kraken
/// reports, rounded toward zero, traded with every check an order alert gets.
pub fn position(
    alert: &Alert,
    market: &Market,
    limits: Limits,
    key: &DedupeKey,
) -> Result<PositionPlan, Reject> {
    let pair = market.pair;
    let Some(target) = alert.target else {
        return Err(field(
            "position",
            "give one of position, position_quote, position_percent",
        ));
    };
    let last = market
        .last
        .filter(|p| *p > Decimal::ZERO)
        .ok_or_else(|| Reject::Unavailable {
            retry_after: 5,
            reason: format!(
                "no last trade price for {} to price the target",
                pair.altname
            ),
        })?;
    let too_large = || field(target.field(), "the target is too large to size");
    let position = (market.whole_base.unwrap_or_default() - limits.reserve).max(Decimal::ZERO);
    let raw = match target {
        Target::Base(v) => v,
        Target::Quote(q) => q.checked_div(last).ok_or_else(too_large)?,
        Target::Percent(p) => {
            let holdings = position
                .checked_mul(last)
                .and_then(|v| v.checked_add(market.whole_quote.unwrap_or_default()))
                .ok_or_else(too_large)?;
            holdings
                .checked_mul(p / Decimal::ONE_HUNDRED)
                .and_then(|v| v.checked_div(last))
                .ok_or_else(too_large)?
        }
    };
    let raw = if raw < Decimal::ZERO {
        match limits.position_negative {
            PositionNegative::Refuse => {
                return Err(field(
                    target.field(),
                    "a negative target (a short position) cannot be held on a spot account; \
                     position_negative = flat holds nothing instead",
                ))
            }
            PositionNegative::Flat => Decimal::ZERO,
        }
    } else {
        raw
    };
    let target_volume = volume_down(raw, pair.lot_decimals);
    if let Some(max) = limits.max_position_value {
        let value = raw.checked_mul(last).ok_or_else(too_large)?;
        if value > max {
            return Err(Reject::LimitExceeded {
                reason: format!(
                    "target value {} exceeds max_position_value {}",
                    value.round_dp(8).normalize(),
                    max.normalize()
                ),
            });
        }
    }
    let in_position = |order| PositionPlan {
        position: position.normalize(),
        target: target_volume.normalize(),
        order,
    };
    // The difference, rounded toward zero: never past the target.
    let difference = raw - position;
    let volume = volume_down(difference.abs(), pair.lot_decimals);
    let Some(volume) = Positive::from_decimal(volume) else {
        return Ok(in_position(None));
    };
    let side = if difference > Decimal::ZERO {
        Side::Buy
    } else {
        Side::Sell
    };
    // The order is an order alert's: every check of contract 2.3 applies to it.
    let order_alert = Alert {
        action: Action::Order,
        side: Some(side),
        size: Some(Size::Volume(volume)),
        target: None,
        ..alert.clone()
    };
    match plan(&order_alert, market, limits, key) {
        Ok(order) => Ok(in_position(Some(order))),
        Err(Reject::BelowMinimum { .. }) => Ok(in_position(None)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
