//! Untrusted alert bodies: the JSON object reader, the field checks, and the two text parsers
//! an alert reaches (exact decimals and timestamps).
//!
//! Besides "never panics", it checks two round trips: a parsed decimal's plain text parses
//! back to the same value, and a parsed timestamp written as RFC 3339 parses back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tv_kraken_bridge::alert::{self, Alert};
use tv_kraken_bridge::decimal::Positive;
use tv_kraken_bridge::time::{self, Now};

/// The last second of year 9999: `Now::rfc3339` writes four-digit years.
const MAX_RFC3339_SECS: i64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    if let Some(object) = alert::parse_object(data) {
        // Only valid UTF-8 JSON gets this far.
        assert!(
            std::str::from_utf8(data).is_ok(),
            "parse_object took non-UTF-8"
        );
        if let Ok(alert) = Alert::from_object(&object) {
            check_alert(&alert);
        }
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(p) = Positive::parse(text) {
        assert!(
            p.value().is_sign_positive() && !p.value().is_zero(),
            "Positive::parse({text:?}) gave {p:?}"
        );
        let plain = p.to_plain();
        let again = Positive::parse(&plain)
            .unwrap_or_else(|e| panic!("to_plain {plain:?} of {text:?} does not parse: {e}"));
        assert_eq!(again, p, "{text:?} -> {plain:?}");
    }

    if let Some(secs) = time::parse_timestamp(text) {
        if (0..=MAX_RFC3339_SECS).contains(&secs) {
            let written = Now(secs as u64 * 1_000_000).rfc3339();
            assert_eq!(
                time::parse_timestamp(&written),
                Some(secs),
                "{text:?} -> {secs} -> {written:?}"
            );
        }
    }
});

/// What a checked alert promises the rest of the core.
fn check_alert(alert: &Alert) {
    if let Some(id) = &alert.id {
        assert!(!id.is_empty() && id.len() <= 64, "id {id:?}");
    }
    if let Some(symbol) = &alert.symbol {
        assert!(!symbol.chars().any(char::is_control), "symbol {symbol:?}");
    }
    if let Some(price) = &alert.price {
        // What Kraken receives is never empty and never an exponent.
        let text = price.to_kraken();
        assert!(
            !text.is_empty() && !text.contains(['e', 'E']),
            "price {text:?}"
        );
    }
}
