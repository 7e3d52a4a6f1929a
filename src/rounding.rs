//! Rounding to a pair's precision (contract 2.3), in exact decimals: volumes always down, prices
//! to the tick in the direction that never makes an order more aggressive than the alert asked.

use rust_decimal::prelude::*;

/// Which way a price may move without making the order more aggressive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// Round down (a buy's limit, a sell stop's trigger...).
    Down,
    /// Round up (a sell's limit, a buy stop's trigger...).
    Up,
}

/// `volume` rounded down to `lot_decimals`.
pub fn volume_down(volume: Decimal, lot_decimals: u32) -> Decimal {
    volume
        .round_dp_with_strategy(lot_decimals, RoundingStrategy::ToZero)
        .normalize()
}

/// `price` rounded to a multiple of `tick` (and to `pair_decimals`) in direction `toward`.
pub fn price_to_tick(price: Decimal, tick: Decimal, pair_decimals: u32, toward: Toward) -> Decimal {
    let strategy = match toward {
        Toward::Down => RoundingStrategy::ToNegativeInfinity,
        Toward::Up => RoundingStrategy::ToPositiveInfinity,
    };
    let on_decimals = price.round_dp_with_strategy(pair_decimals, strategy);
    // Checked arithmetic: a price and tick whose quotient does not fit a decimal stay on the
    // pair's decimals (Kraken then refuses the tick), rather than panicking.
    let on_tick = (tick > Decimal::ZERO)
        .then(|| on_decimals.checked_div(tick))
        .flatten()
        .and_then(|steps| steps.round_dp_with_strategy(0, strategy).checked_mul(tick))
        .unwrap_or(on_decimals);
    on_tick.normalize()
}

/// Whether `value` has at most `decimals` decimal places.
pub fn fits_decimals(value: Decimal, decimals: u32) -> bool {
    value.normalize().scale() <= decimals
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn examples() {
        assert_eq!(volume_down(d("0.123456789"), 8), d("0.12345678"));
        assert_eq!(volume_down(d("5"), 8), d("5"));
        assert_eq!(
            price_to_tick(d("37500.55"), d("0.1"), 1, Toward::Down),
            d("37500.5")
        );
        assert_eq!(
            price_to_tick(d("37500.55"), d("0.1"), 1, Toward::Up),
            d("37500.6")
        );
        assert_eq!(
            price_to_tick(d("37500.5"), d("0.1"), 1, Toward::Up),
            d("37500.5")
        );
        assert_eq!(
            price_to_tick(d("0.15000004"), d("0.0000001"), 7, Toward::Down),
            d("0.15")
        );
        assert_eq!(
            price_to_tick(d("101.3"), d("0.5"), 1, Toward::Down),
            d("101")
        );
        assert_eq!(
            price_to_tick(d("101.3"), d("0.5"), 1, Toward::Up),
            d("101.5")
        );
        assert!(fits_decimals(d("1.2500"), 2));
        // Found by fuzzing: a quotient too large for a decimal must not panic.
        let huge = d("79228162514264337593543950335");
        assert_eq!(price_to_tick(huge, d("0.1"), 1, Toward::Down), huge);
        assert!(!fits_decimals(d("1.255"), 2));
    }

    fn decimal(max_scale: u32) -> impl Strategy<Value = Decimal> {
        (1u64..=10_000_000_000_000u64, 0..=max_scale).prop_map(|(m, s)| Decimal::new(m as i64, s))
    }

    proptest! {
        /// Rounding never increases a volume, and the result has at most lot_decimals places.
        #[test]
        fn volume_never_grows(v in decimal(18), lot in 0u32..=10) {
            let r = volume_down(v, lot);
            prop_assert!(r <= v);
            prop_assert!(fits_decimals(r, lot));
            prop_assert!(v - r < Decimal::new(1, lot));
        }

        /// A rounded price is a multiple of the tick with at most pair_decimals places, moved
        /// only in the allowed direction and by less than one tick; so the cost of a buy
        /// (volume down, price down) never grows.
        #[test]
        fn price_moves_only_the_allowed_way(p in decimal(12), dp in 0u32..=8, tick_steps in 1i64..=50) {
            let tick = Decimal::new(tick_steps, dp);
            let down = price_to_tick(p, tick, dp, Toward::Down);
            let up = price_to_tick(p, tick, dp, Toward::Up);
            prop_assert!(down <= p && p <= up);
            prop_assert!(p - down < tick && up - p < tick);
            prop_assert!((down / tick).fract().is_zero() && (up / tick).fract().is_zero());
            prop_assert!(fits_decimals(down, dp) && fits_decimals(up, dp));
        }

        #[test]
        fn buy_cost_never_grows(v in decimal(12), p in decimal(8), lot in 0u32..=8, dp in 0u32..=8) {
            let tick = Decimal::new(1, dp);
            let cost = v * p;
            let rounded = volume_down(v, lot) * price_to_tick(p, tick, dp, Toward::Down);
            prop_assert!(rounded <= cost);
        }
    }
}
