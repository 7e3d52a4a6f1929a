//! Exact decimals for sizes and prices: parsed from JSON strings or numbers without ever
//! passing through binary floating point, and written back as plain strings Kraken accepts.

use rust_decimal::Decimal;
use std::str::FromStr;

/// The largest amount an alert may give: far above any real order, far below where exact
/// decimal arithmetic (28 digits) could overflow in sizing and cost checks.
pub const MAX_WHOLE: i64 = 1_000_000_000_000_000;

/// A finite, strictly positive decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Positive(Decimal);

impl Positive {
    /// Parses plain decimal notation: digits, optionally a point and more digits. No sign,
    /// no exponent, no `NaN`/`Infinity`, at most 28 significant digits, greater than zero.
    pub fn parse(text: &str) -> Result<Positive, &'static str> {
        let value = plain(text)?;
        if value.is_zero() {
            return Err("must be greater than zero");
        }
        Ok(Positive(value))
    }

    /// A value known to be a decimal: `None` unless it is greater than zero and at most
    /// [`MAX_WHOLE`].
    pub fn from_decimal(value: Decimal) -> Option<Positive> {
        (value > Decimal::ZERO && value <= Decimal::from(MAX_WHOLE))
            .then(|| Positive(value.normalize()))
    }

    /// The exact value.
    pub fn value(self) -> Decimal {
        self.0
    }

    /// Plain decimal text with no exponent and no trailing zeros, e.g. `0.01`, `37500`.
    pub fn to_plain(self) -> String {
        self.0.normalize().to_string()
    }
}

/// Parses plain decimal notation with no sign: zero or more, at most [`MAX_WHOLE`].
fn plain(text: &str) -> Result<Decimal, &'static str> {
    let t = text.trim();
    if t.is_empty() {
        return Err("must be a decimal number");
    }
    if t.starts_with('-') {
        return Err("must be positive");
    }
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let valid =
        !int.is_empty() && digits_ok(int) && frac.is_none_or(|f| !f.is_empty() && digits_ok(f));
    if !valid {
        return Err("must be a plain decimal number such as 0.01 (no sign, exponent or spaces)");
    }
    let value = Decimal::from_str(t).map_err(|_| "has too many digits")?;
    // rust_decimal silently rounds past 28 fractional digits: refuse instead.
    if value.normalize().to_string() != normalized_text(t) {
        return Err("has too many digits");
    }
    if value > Decimal::from(MAX_WHOLE) {
        return Err("is too large (at most 1000000000000000)");
    }
    Ok(value.normalize())
}

/// Parses a signed plain decimal (`-0.5`, `0`, `1.25`): what a strategy's position size
/// looks like (`{{strategy.position_size}}` is negative when the strategy is short). No
/// exponent, no `+`, at most [`MAX_WHOLE`] either way.
pub fn parse_signed(text: &str) -> Result<Decimal, &'static str> {
    let t = text.trim();
    match t.strip_prefix('-') {
        Some(rest) if rest.starts_with(char::is_whitespace) => {
            Err("must be a plain decimal number such as -0.5")
        }
        Some(rest) => match plain(rest) {
            Ok(v) if v.is_zero() => Ok(Decimal::ZERO),
            Ok(v) => Ok(-v),
            Err("must be positive") => Err("must be a plain decimal number such as -0.5"),
            Err(e) => Err(e),
        },
        None => plain(t).map_err(|e| match e {
            "must be a plain decimal number such as 0.01 (no sign, exponent or spaces)" => {
                "must be a plain decimal number such as 0.5, 0 or -0.5 (no exponent)"
            }
            e => e,
        }),
    }
}

/// The canonical text of a plain decimal: no leading zeros, no trailing fractional zeros.
fn normalized_text(t: &str) -> String {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(Positive::parse("0.01").unwrap().to_plain(), "0.01");
        assert_eq!(Positive::parse("1.250").unwrap().to_plain(), "1.25");
        assert_eq!(Positive::parse("37500").unwrap().to_plain(), "37500");
        assert_eq!(Positive::parse("0.1").unwrap().value(), Decimal::new(1, 1));
        assert_eq!(
            Positive::parse("0.000000000000000000000000001")
                .unwrap()
                .to_plain(),
            "0.000000000000000000000000001"
        );
        assert_eq!(Positive::parse(" 2.5 ").unwrap().to_plain(), "2.5");
        assert_eq!(Positive::parse("007.50").unwrap().to_plain(), "7.5");
        assert_eq!(
            Positive::parse("1000000000000000").unwrap().to_plain(),
            "1000000000000000"
        );
    }

    #[test]
    fn signed_values_keep_their_sign_and_allow_zero() {
        assert_eq!(parse_signed("-0.5").unwrap().to_string(), "-0.5");
        assert_eq!(parse_signed("0").unwrap(), Decimal::ZERO);
        assert_eq!(parse_signed("0.000").unwrap(), Decimal::ZERO);
        assert_eq!(parse_signed("-0").unwrap(), Decimal::ZERO);
        assert_eq!(parse_signed(" 1.250 ").unwrap().to_string(), "1.25");
        for bad in [
            "", "-", "--1", "+1", "1e-5", "-1E3", "NaN", "- 1", "1.", "-.5",
        ] {
            assert!(parse_signed(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_signed("-1000000000000000.1").is_err());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "-1",
            "0",
            "0.000",
            "1e-3",
            "1E5",
            "NaN",
            "Infinity",
            "inf",
            "+1",
            ".5",
            "5.",
            "1.2.3",
            "1,5",
            "0x10",
            "1 000",
            "١",
            "99999999999999999999999999999999",
            "0.00000000000000000000000000001",
            "1000000000000000.1",
            "79228162514264337593543950335",
        ] {
            assert!(Positive::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
