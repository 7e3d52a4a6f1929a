//! Position alerts for one pair of one account take turns across every instance that shares
//! the store (contract 2.6), so that two different targets arriving at once never both trade
//! the difference they each read from one balance.
//!
//! The store has atomic counters and no expiry, and an instance can die holding anything.
//! So a turn is a set of counters, one per time slot of [`SLOT_MS`], under
//! `pt:<slot>:<pair>` (`pt:<slot>:@<account>:<pair>` for a named account). A position alert
//! may read Kraken's balance and trade from its arrival until its budget ends; the slots that
//! span covers, widened by [`SKEW_MS`] either side for the clocks of other instances, are
//! its [`keys`]. Two alerts whose spans overlap share the slot of any instant in both.
//!
//! ```text
//! increment each key in slot order ─ every count 1 ─────────────▶ the turn is held
//!   └ a count above 1 (someone holds or takes it) ─▶ decrement what was incremented,
//!        wait, try again while the budget allows; otherwise 503 + retry-after
//! after the answer: decrement every key (a pending order: keep them, and take the slots
//!   up to its Kraken deadline too, so nothing trades until its fate is certain)
//! ```
//!
//! Incrementing in one order means that of two alerts contending for a pair, the one whose
//! increment of their last shared counter came first holds the turn: both can back off only
//! transiently, and then both try again. A counter left up by an instance that died frees
//! itself when its slot passes: at most [`SLOT_MS`] plus the span without position alerts
//! for that pair. Expired counters are deleted by the store's pruning ([`is_expired`]).

/// The prefix of turn counters.
pub const PREFIX: &str = "pt:";

/// The length of a turn slot, in milliseconds.
pub const SLOT_MS: u64 = 5_000;

/// How far the clocks of two instances may disagree: a span is widened by this either side.
pub const SKEW_MS: u64 = 250;

/// How long after its slot ends a turn counter is kept before pruning deletes it (no span
/// reaches it by then, whatever the clocks).
const KEEP_AFTER_SLOT_SECS: u64 = 10;

/// The counters an alert takes to trade a pair between `from_ms` and `until_ms` (Unix
/// milliseconds), in slot order. `account`: the named account, `None` for the default.
pub fn keys(from_ms: u64, until_ms: u64, account: Option<&str>, pair_id: &str) -> Vec<String> {
    let first = from_ms.saturating_sub(SKEW_MS) / SLOT_MS;
    let last = until_ms.saturating_add(SKEW_MS) / SLOT_MS;
    let owner = match account {
        Some(name) => format!("@{name}:{pair_id}"),
        None => pair_id.to_string(),
    };
    (first..=last.max(first))
        .map(|slot| format!("{PREFIX}{slot}:{owner}"))
        .collect()
}

/// Whether a key is a turn counter that no alert can take any more.
pub fn is_expired(key: &str, now_secs: u64) -> bool {
    key.strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(slot, _)| slot.parse::<u64>().ok())
        .is_some_and(|slot| {
            (slot + 1).saturating_mul(SLOT_MS) / 1_000 + KEEP_AFTER_SLOT_SECS <= now_secs
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_of(key: &str) -> u64 {
        key[PREFIX.len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_span_takes_every_slot_it_touches_in_order() {
        // Mid-slot: one counter.
        assert_eq!(keys(11_000, 13_500, None, "XXBTZUSD"), ["pt:2:XXBTZUSD"]);
        // Across an edge: both, in slot order.
        assert_eq!(
            keys(13_000, 15_500, Some("swing"), "XXBTZUSD"),
            ["pt:2:@swing:XXBTZUSD", "pt:3:@swing:XXBTZUSD"]
        );
        // The skew margin reaches the previous slot near its edge.
        assert_eq!(keys(10_100, 12_600, None, "P").len(), 2);
    }

    #[test]
    fn overlapping_spans_always_share_a_counter_and_distant_ones_never_do() {
        let span = 2_500;
        for a in (0..40_000).step_by(97) {
            for b in (a..a + 12_000).step_by(89) {
                let ka = keys(a, a + span, None, "P");
                let kb = keys(b, b + span, None, "P");
                let shared = ka.iter().any(|k| kb.contains(k));
                if b <= a + span {
                    assert!(shared, "{a} and {b} overlap");
                }
                if b > a + span + SLOT_MS + 2 * SKEW_MS {
                    assert!(!shared, "{a} and {b} are far apart");
                }
            }
        }
    }

    #[test]
    fn accounts_and_pairs_never_share_a_counter() {
        let a = keys(0, 2_500, None, "XXBTZUSD");
        let b = keys(0, 2_500, Some("swing"), "XXBTZUSD");
        let c = keys(0, 2_500, None, "XETHZUSD");
        assert!(a.iter().all(|k| !b.contains(k) && !c.contains(k)));
    }

    #[test]
    fn counters_expire_once_no_span_can_reach_them() {
        let key = &keys(20_000, 22_500, None, "P")[0];
        assert_eq!(slot_of(key), 3); // 20 s less the skew: slot 3 (15 to 20 s)
        assert!(!is_expired(key, 29));
        assert!(is_expired(key, 30));
        assert!(!is_expired("dd:60:1:x", 1_000_000));
        assert!(!is_expired("pt:x:P", 1_000_000));
    }
}
