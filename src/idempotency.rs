//! The dedupe key of an alert and the Kraken `cl_ord_id` derived from it (contract 2.4).
//!
//! The key is the alert's `id`, or else the SHA-256 of the raw body, so TradingView's resend
//! of the same alert maps to the same key and the same `cl_ord_id`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long an `id` key is kept, in seconds (contract 2.4).
pub const ID_TTL_SECS: u64 = 24 * 60 * 60;

/// The shortest body-hash lifetime: two claim slots (see [`DedupeKey::claim_keys`]).
pub const MIN_TTL_SECS: u64 = 2 * CLAIM_SLOT_SECS;

/// A claim older than this belongs to a request that died: its alert is looked up on Kraken
/// by `cl_ord_id` before anything is sent again. It is longer than any request can still
/// place an order: the budget (2.5 s) plus the AddOrder `deadline` (5 s) Kraken enforces.
pub const IN_FLIGHT_STALE_SECS: u64 = 10;

/// An in-flight record claimed more than this many whole seconds ago belongs to a request
/// that has ended: the budget is 2.5 s, and whole seconds round down by up to one.
pub const REQUEST_ENDED_SECS: u64 = 3;

/// A delivery must have written its in-flight record within this many milliseconds of its
/// arrival to claim the alert; a slower store answers `503` and the resend claims again.
/// This bounds how far apart two deliveries that both miss each other's record can be, so
/// that claim slots of [`CLAIM_SLOT_SECS`] always give them a common counter.
pub const CLAIM_WINDOW_MS: u64 = 1_000;

/// The length of a claim slot, in seconds.
pub const CLAIM_SLOT_SECS: u64 = 10;

/// The prefix of dedupe records.
pub const PREFIX: &str = "dd:";

/// The prefix of claim counters.
pub const CLAIM_PREFIX: &str = "dc:";

/// The prefix of the filters of forgotten dedupe keys.
pub const FORGOTTEN_PREFIX: &str = "fg:";

/// The prefix of the pruning lease counters.
pub const PRUNE_LEASE_PREFIX: &str = "pl:";

/// One pruning lease per this many seconds: one request prunes at a time.
pub const PRUNE_LEASE_SECS: u64 = 10;

/// At most this many deletions per request, to stay inside the time budget.
pub const MAX_DELETES_PER_REQUEST: usize = 48;

/// Where a dedupe key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The alert's `id`.
    Id(String),
    /// Lower-case hex SHA-256 of the raw body.
    BodyHash(String),
}

/// An alert's identity: where it came from, and the account it was sent to (contract 2.7:
/// one `id` sent to two accounts is two alerts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeKey {
    source: Source,
    /// The named account, `None` for the default one.
    account: Option<String>,
}

impl DedupeKey {
    /// The key for an alert with an optional `id` and the given raw body, to the default
    /// account.
    pub fn new(id: Option<&str>, body: &[u8]) -> DedupeKey {
        let source = match id {
            Some(id) => Source::Id(id.to_string()),
            None => Source::BodyHash(hex(&Sha256::digest(body))),
        };
        DedupeKey {
            source,
            account: None,
        }
    }

    /// The same alert sent to account `account` (`None`: the default account).
    pub fn in_account(mut self, account: Option<&str>) -> DedupeKey {
        self.account = account.map(str::to_string);
        self
    }

    /// The key as stored, prefixed by its kind so an `id` can never collide with a hash,
    /// and, for a named account, by `@` and the account's name, so that no account's key
    /// (its records, claims and `cl_ord_id`) is ever another's or the default account's.
    pub fn as_store_key(&self) -> String {
        let key = match &self.source {
            Source::Id(id) => format!("id:{id}"),
            Source::BodyHash(h) => format!("body:{h}"),
        };
        match &self.account {
            None => key,
            Some(account) => format!("@{account}:{key}"),
        }
    }

    /// How long this key is kept: `window_secs` for a body hash, 24 hours for an `id`.
    pub fn ttl(&self, window_secs: u64) -> u64 {
        match self.source {
            Source::Id(_) => ID_TTL_SECS,
            Source::BodyHash(_) => window_secs.max(MIN_TTL_SECS),
        }
    }

    /// The store keys that may hold this key's record: the current time bucket first, then
    /// the previous one. Buckets are `ttl` long and named with their length, so pruning
    /// needs only the key names.
    pub fn store_keys(&self, now_secs: u64, window_secs: u64) -> [String; 2] {
        let len = self.ttl(window_secs);
        let bucket = now_secs / len;
        let name = |b: u64| format!("{PREFIX}{len}:{b}:{}", self.as_store_key());
        [name(bucket), name(bucket.saturating_sub(1))]
    }

    /// The claim counters of a delivery that arrived at `started_ms`: the counter of its
    /// claim slot, and the neighbouring slot's too when it arrived within a second of the
    /// slot's edge (one delivery in five). The delivery owns the alert when every one of
    /// them returns 1.
    ///
    /// Two deliveries that both missed each other's in-flight record arrived less than
    /// [`CLAIM_WINDOW_MS`] apart: in one slot they share its counter, and across an edge
    /// both are within a second of it and share both counters. So at most one owns the
    /// alert. Deliveries a lifetime apart (at least two slots) share none, so an alert seen
    /// again after its lifetime is never blocked by the counters of the first one.
    ///
    /// The counters come in slot order, and a delivery increments them in that order and
    /// stops at the first that is not 1. Every delivery follows one order, so some delivery
    /// always owns the alert: a delivery that loses a counter lost it to one that came first
    /// and goes on to later counters only. In arrival order, one delivery on each side of an
    /// edge could each win its own slot's counter, then lose the other's: both would lose,
    /// and nothing would trade.
    pub fn claim_keys(&self, started_ms: u64) -> Vec<String> {
        let slot_ms = CLAIM_SLOT_SECS * 1_000;
        let slot = started_ms / slot_ms;
        let into = started_ms % slot_ms;
        let key = self.as_store_key();
        let name = |s: u64| format!("{CLAIM_PREFIX}{CLAIM_SLOT_SECS}:{s}:{key}");
        let mut slots = Vec::with_capacity(2);
        if into < CLAIM_WINDOW_MS && slot > 0 {
            slots.push(slot - 1);
        }
        slots.push(slot);
        if into + CLAIM_WINDOW_MS >= slot_ms {
            slots.push(slot + 1);
        }
        slots.into_iter().map(name).collect()
    }

    /// The filters that would name this key had its record been forgotten: the same time
    /// buckets as [`store_keys`](Self::store_keys).
    pub fn forgotten_keys(&self, now_secs: u64, window_secs: u64) -> [String; 2] {
        let len = self.ttl(window_secs);
        let bucket = now_secs / len;
        [
            forgotten_key(len, bucket),
            forgotten_key(len, bucket.saturating_sub(1)),
        ]
    }

    /// Kraken's short-UUID form of `cl_ord_id`: 32 lower-case hex digits derived from the key.
    pub fn cl_ord_id(&self) -> String {
        let digest = Sha256::digest(format!(
            "tv-kraken-bridge/cl_ord_id/{}",
            self.as_store_key()
        ));
        hex(&digest[..16])
    }
}

/// Whether the request that wrote a record has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Claimed by a request still talking to Kraken (or one that died).
    InFlight,
    /// The first outcome is known.
    Done,
    /// The delivery that claimed it answered `503`: nothing was placed, and the next
    /// delivery takes it over.
    Released,
}

/// What the store keeps for a dedupe key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// In flight or done.
    pub state: RecordState,
    /// When the key was first seen, Unix seconds.
    pub first_seen: u64,
    /// The `cl_ord_id` of the alert's order.
    pub cl_ord_id: String,
    /// The first outcome's HTTP status (`0` while in flight).
    pub status: u16,
    /// The first outcome's body (`null` while in flight).
    pub body: Value,
    /// The request id of the delivery that wrote it.
    #[serde(default)]
    pub owner: String,
    /// When the current owner claimed it, Unix seconds (0: at `first_seen`).
    #[serde(default)]
    pub claimed_at: u64,
}

impl Record {
    /// A claim in flight: no outcome yet, `owner` (a request id, or empty when unknown)
    /// claimed it at `claimed_at`.
    pub fn in_flight(first_seen: u64, cl_ord_id: &str, owner: &str, claimed_at: u64) -> Record {
        Record {
            state: RecordState::InFlight,
            first_seen,
            cl_ord_id: cl_ord_id.to_string(),
            status: 0,
            body: Value::Null,
            owner: owner.to_string(),
            claimed_at,
        }
    }

    /// Reads a stored record; `None` for anything unreadable.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        serde_json::from_slice(bytes).ok()
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialise")
    }

    /// Whether the record still counts at `now_secs` for a key kept `ttl` seconds.
    pub fn is_live(&self, now_secs: u64, ttl: u64) -> bool {
        now_secs.saturating_sub(self.first_seen) <= ttl
    }

    /// Whether an in-flight record's owner must be dead: it claimed the alert longer ago
    /// than any request can still place an order.
    pub fn is_stale(&self, now_secs: u64) -> bool {
        let claimed = self.claimed_at.max(self.first_seen);
        self.state == RecordState::InFlight
            && now_secs.saturating_sub(claimed) > IN_FLIGHT_STALE_SECS
    }

    /// Whether an in-flight record's owner's request has certainly ended (it claimed more
    /// than the whole budget ago, in whole seconds) without recording an outcome, while the
    /// record is not stale yet: whether that owner reached Kraken cannot be known yet.
    pub fn is_unsettled(&self, now_secs: u64) -> bool {
        let claimed = self.claimed_at.max(self.first_seen);
        self.state == RecordState::InFlight
            && now_secs.saturating_sub(claimed) > REQUEST_ENDED_SECS
            && !self.is_stale(now_secs)
    }

    /// Seconds until an in-flight record goes stale (0: it is).
    pub fn stale_in(&self, now_secs: u64) -> u64 {
        let claimed = self.claimed_at.max(self.first_seen);
        (claimed + IN_FLIGHT_STALE_SECS + 1).saturating_sub(now_secs)
    }

    /// The `200 duplicate` body: the first outcome's fields, its `status` renamed `outcome`.
    pub fn duplicate_body(&self) -> Value {
        let mut body = match &self.body {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let outcome = match self.state {
            RecordState::InFlight | RecordState::Released => Value::from("in_flight"),
            // A refusal's outcome is its error code.
            RecordState::Done => body
                .remove("status")
                .or_else(|| body.get("error").cloned())
                .unwrap_or(Value::Null),
        };
        if !outcome.is_null() {
            body.insert("outcome".into(), outcome);
        }
        body.insert("cl_ord_id".into(), self.cl_ord_id.clone().into());
        body.insert("status".into(), "duplicate".into());
        Value::Object(body)
    }
}

/// The store key of the filter of keys forgotten from bucket `bucket` of length `len`.
pub fn forgotten_key(len: u64, bucket: u64) -> String {
    format!("{FORGOTTEN_PREFIX}{len}:{bucket}")
}

/// The pruning lease counter for the slot that contains `now_secs`.
pub fn prune_lease_key(now_secs: u64) -> String {
    format!("{PRUNE_LEASE_PREFIX}{}", now_secs / PRUNE_LEASE_SECS)
}

/// What one pruning pass does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prune {
    /// Dedupe records still inside their horizon that must go to respect the key budget,
    /// grouped by the filter that must name them before they are deleted:
    /// `(filter key, [(record key, dedupe key)])`.
    pub forget: Vec<(String, Vec<(String, String)>)>,
    /// Expired keys to delete.
    pub delete: Vec<String>,
}

/// Plans a pruning pass over every key in the store: expired dedupe buckets, claim
/// counters, filters, leases, rate-limit minutes and position turns go first; then, while more than
/// `max_keys` remain (a store with a key cap, such as Fermyon Cloud's 1,024), the oldest
/// dedupe records, which are named in a forgotten-keys filter before they are deleted. At
/// most [`MAX_DELETES_PER_REQUEST`] deletions.
pub fn prune(keys: &[String], now_secs: u64, max_keys: Option<usize>) -> Prune {
    let mut live: Vec<(u64, u64, u64, &String)> = Vec::new();
    let mut delete: Vec<&String> = Vec::new();
    for key in keys {
        let expired = crate::rate_limit::is_expired(key, now_secs)
            || crate::turn::is_expired(key, now_secs)
            || claim_expired(key, now_secs)
            || lease_expired(key, now_secs);
        if expired {
            delete.push(key);
        } else if let Some((len, bucket)) = bucket_of(key, PREFIX) {
            // A record in bucket b is looked up until bucket b + 1 ends.
            if (bucket + 2).saturating_mul(len) <= now_secs {
                delete.push(key);
            } else {
                live.push((bucket.saturating_mul(len), len, bucket, key));
            }
        } else if let Some((len, bucket)) = bucket_of(key, FORGOTTEN_PREFIX) {
            if (bucket + 2).saturating_mul(len) <= now_secs {
                delete.push(key);
            }
        }
    }
    delete.truncate(MAX_DELETES_PER_REQUEST);
    let mut plan = Prune::default();
    let remaining = keys.len() - delete.len();
    let budget = MAX_DELETES_PER_REQUEST - delete.len();
    if let Some(max) = max_keys {
        if remaining > max {
            // Oldest bucket first, and by name within a bucket.
            live.sort();
            for &(_, len, bucket, key) in live.iter().take((remaining - max).min(budget)) {
                let filter = forgotten_key(len, bucket);
                let dedupe = key
                    .strip_prefix(PREFIX)
                    .and_then(|k| k.splitn(3, ':').nth(2))
                    .unwrap_or_default()
                    .to_string();
                let entry = (key.clone(), dedupe);
                match plan.forget.iter_mut().find(|(f, _)| *f == filter) {
                    Some((_, ks)) => ks.push(entry),
                    None => plan.forget.push((filter, vec![entry])),
                }
            }
        }
    }
    plan.delete = delete.into_iter().cloned().collect();
    plan
}

fn claim_expired(key: &str, now_secs: u64) -> bool {
    // Slot s's counter is incremented by deliveries that arrived in slots s - 1 to s + 1
    // within a second of its edges, and a claim only counts when its increments end within
    // CLAIM_WINDOW_MS of the arrival: none after (s + 1) * len + 2 s. Deleted a second
    // later (a margin for the clocks of other instances), so that each alert holds its one
    // or two counters for 3 to 13 s.
    bucket_of(key, CLAIM_PREFIX).is_some_and(|(len, slot)| {
        (slot + 1)
            .saturating_mul(len)
            .saturating_add(CLAIM_COUNTER_MARGIN_SECS)
            <= now_secs
    })
}

/// How long after its slot ends a claim counter is kept.
const CLAIM_COUNTER_MARGIN_SECS: u64 = 3;

fn lease_expired(key: &str, now_secs: u64) -> bool {
    key.strip_prefix(PRUNE_LEASE_PREFIX)
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|slot| slot + 1 < now_secs / PRUNE_LEASE_SECS)
}

fn bucket_of(key: &str, prefix: &str) -> Option<(u64, u64)> {
    let mut parts = key.strip_prefix(prefix)?.splitn(3, ':');
    let len = parts.next()?.parse().ok()?;
    let bucket = parts.next()?.parse().ok()?;
    Some((len, bucket))
}

/// A Bloom filter of dedupe keys whose records were deleted inside their horizon. An alert
/// whose key it may contain is looked up on Kraken by `cl_ord_id` before it is sent; with
/// the sizes below, about 1 % of other alerts are too (at 3,000 keys per filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    bits: Vec<u8>,
}

impl Forgotten {
    /// The filter's size in bytes.
    pub const BYTES: usize = 4_096;
    const HASHES: usize = 7;

    /// An empty filter.
    pub fn new() -> Forgotten {
        Forgotten {
            bits: vec![0; Self::BYTES],
        }
    }

    /// Reads a stored filter; anything unreadable counts as a full one (every key may have
    /// been forgotten), so a damaged filter costs look-ups, never a second order.
    pub fn decode(bytes: &[u8]) -> Forgotten {
        if bytes.len() == Self::BYTES {
            Forgotten {
                bits: bytes.to_vec(),
            }
        } else {
            Forgotten {
                bits: vec![0xff; Self::BYTES],
            }
        }
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        self.bits.clone()
    }

    fn positions(key: &str) -> impl Iterator<Item = usize> {
        let digest = Sha256::digest(format!("tv-kraken-bridge/forgotten/{key}"));
        (0..Self::HASHES).map(move |i| {
            let word = u32::from_le_bytes(digest[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            word as usize % (Self::BYTES * 8)
        })
    }

    /// Adds a dedupe key (as [`DedupeKey::as_store_key`] spells it).
    pub fn insert(&mut self, key: &str) {
        for p in Self::positions(key) {
            self.bits[p / 8] |= 1 << (p % 8);
        }
    }

    /// Whether the key may have been added (never a false "no").
    pub fn may_contain(&self, key: &str) -> bool {
        Self::positions(key).all(|p| self.bits[p / 8] & (1 << (p % 8)) != 0)
    }
}

impl Default for Forgotten {
    fn default() -> Self {
        Forgotten::new()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn id_wins_over_body() {
        let a = DedupeKey::new(Some("s1-2025"), b"{\"a\":1}");
        let b = DedupeKey::new(Some("s1-2025"), b"{\"a\":2}");
        assert_eq!(a, b);
        assert_eq!(a.cl_ord_id(), b.cl_ord_id());
    }

    #[test]
    fn body_hash_key() {
        let k = DedupeKey::new(None, b"abc");
        assert_eq!(
            k.as_store_key(),
            "body:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(k.cl_ord_id(), DedupeKey::new(None, b"abd").cl_ord_id());
    }

    #[test]
    fn one_alert_sent_to_two_accounts_is_two_alerts() {
        let default = DedupeKey::new(Some("a"), b"");
        let swing = DedupeKey::new(Some("a"), b"").in_account(Some("swing"));
        let scalp = DedupeKey::new(Some("a"), b"").in_account(Some("scalp"));
        // The default account's keys are what they were before accounts existed.
        assert_eq!(default, DedupeKey::new(Some("a"), b"").in_account(None));
        assert_eq!(default.as_store_key(), "id:a");
        assert_eq!(swing.as_store_key(), "@swing:id:a");
        let ids = [&default, &swing, &scalp].map(|k| k.cl_ord_id());
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        let at = 86_400 * 3 + 5;
        assert_ne!(default.store_keys(at, 60), swing.store_keys(at, 60));
        assert_ne!(swing.claim_keys(at * 1_000), scalp.claim_keys(at * 1_000));
        // An `id` that looks like an account's key is still the default account's own.
        let lookalike = DedupeKey::new(Some("x"), b"").in_account(Some("a"));
        assert_ne!(
            lookalike.as_store_key(),
            DedupeKey::new(Some("@a:id:x"), b"").as_store_key()
        );
    }

    #[test]
    fn store_keys_are_time_buckets_of_the_key_lifetime() {
        let body = DedupeKey::new(None, b"abc");
        let [now, prev] = body.store_keys(1_000, 60);
        assert!(now.starts_with("dd:60:16:body:"));
        assert!(prev.starts_with("dd:60:15:body:"));
        let id = DedupeKey::new(Some("a"), b"");
        assert_eq!(
            id.store_keys(86_400 * 3 + 5, 60),
            ["dd:86400:3:id:a".to_string(), "dd:86400:2:id:a".into()]
        );
        // A duplicate within the window always finds the first record in one of the two.
        for first in (0..600).step_by(7) {
            for later in first..=first + 60 {
                let written = &body.store_keys(first, 60)[0];
                assert!(
                    body.store_keys(later, 60).contains(written),
                    "{first} {later}"
                );
            }
        }
    }

    #[test]
    fn records_and_duplicate_bodies() {
        let done = Record {
            state: RecordState::Done,
            first_seen: 100,
            cl_ord_id: "c".into(),
            status: 200,
            body: serde_json::json!({"status":"placed","txid":["T"],"cl_ord_id":"c"}),
            owner: "r1".into(),
            claimed_at: 0,
        };
        assert_eq!(Record::decode(&done.encode()), Some(done.clone()));
        assert_eq!(
            done.duplicate_body(),
            serde_json::json!({"status":"duplicate","outcome":"placed","txid":["T"],"cl_ord_id":"c"})
        );
        assert!(done.is_live(160, 60));
        assert!(!done.is_live(161, 60));
        let in_flight = Record {
            state: RecordState::InFlight,
            status: 0,
            body: Value::Null,
            ..done
        };
        assert_eq!(
            in_flight.duplicate_body(),
            serde_json::json!({"status":"duplicate","outcome":"in_flight","cl_ord_id":"c"})
        );
        assert_eq!(Record::decode(b"not json"), None);
        let refused = Record {
            state: RecordState::Done,
            first_seen: 1,
            cl_ord_id: "c".into(),
            status: 422,
            body: serde_json::json!({"error":"order_rejected","kraken_error":"EOrder:Insufficient funds"}),
            owner: String::new(),
            claimed_at: 0,
        };
        assert_eq!(refused.duplicate_body()["outcome"], "order_rejected");
        assert_eq!(
            refused.duplicate_body()["kraken_error"],
            "EOrder:Insufficient funds"
        );
    }

    #[test]
    fn pruning_drops_expired_keys() {
        let now = 10_000;
        let keys: Vec<String> = vec![
            "dd:60:166:body:a".into(), // current bucket (166*60 = 9960)
            "dd:60:165:body:b".into(), // previous: still looked up
            "dd:60:164:body:c".into(), // expired
            "dd:86400:0:id:x".into(),  // bucket 0 of a day: live until 2 days
            "rl:166".into(),
            "rl:165".into(),
            "rl:164".into(),         // expired
            "dc:2:4999:id:x".into(), // slot 4999 (9998 s): kept until 10003
            "dc:2:4997:id:x".into(), // expired: (4997 + 1) * 2 + 3 = 9999
            "fg:60:164".into(),      // a filter of an expired bucket
            "fg:60:165".into(),
            "pl:999".into(),
            "pl:998".into(),              // an old lease
            "pt:1998:XXBTZUSD".into(),    // a turn slot ending at 9995 s: kept until 10005
            "pt:1997:@a:XXBTZUSD".into(), // ended at 9990 s: expired
            "unrelated".into(),
        ];
        let mut plan = prune(&keys, now, None);
        plan.delete.sort();
        assert_eq!(
            plan.delete,
            [
                "dc:2:4997:id:x",
                "dd:60:164:body:c",
                "fg:60:164",
                "pl:998",
                "pt:1997:@a:XXBTZUSD",
                "rl:164"
            ]
        );
        assert!(plan.forget.is_empty());
        // Without a key budget, nothing live is ever deleted, however many keys there are.
        let many: Vec<String> = (0..5_000)
            .map(|i| format!("dd:86400:0:id:k{i:04}"))
            .collect();
        assert_eq!(prune(&many, now, None), Prune::default());
        let lots: Vec<String> = (0..100).map(|i| format!("dd:60:1:body:{i}")).collect();
        assert_eq!(
            prune(&lots, now, None).delete.len(),
            MAX_DELETES_PER_REQUEST
        );
    }

    #[test]
    fn a_key_budget_forgets_the_oldest_records_into_filters() {
        let now = 100_000;
        let mut keys: Vec<String> = (0..70)
            .map(|i| format!("dd:86400:1:id:new{i:02}"))
            .collect();
        keys.extend((0..5).map(|i| format!("dd:86400:0:id:old{i}")));
        let plan = prune(&keys, now, Some(72));
        assert!(plan.delete.is_empty());
        // The three oldest go, each named in its bucket's filter.
        assert_eq!(plan.forget.len(), 1);
        let (filter, records) = &plan.forget[0];
        assert_eq!(filter, "fg:86400:0");
        let names: Vec<&str> = records.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(names, ["id:old0", "id:old1", "id:old2"]);
        assert_eq!(records[0].0, "dd:86400:0:id:old0");
        // What a filter names, the alert's own key finds.
        let mut f = Forgotten::new();
        for (_, d) in records {
            f.insert(d);
        }
        let key = DedupeKey::new(Some("old1"), b"");
        assert!(f.may_contain(&key.as_store_key()));
        assert_eq!(key.forgotten_keys(now, 60)[0], "fg:86400:1");
        assert_eq!(key.forgotten_keys(now, 60)[1], "fg:86400:0");
        assert!(!f.may_contain("id:new01"));
        let f = Forgotten::decode(&f.encode());
        assert!(f.may_contain("id:old2"));
        // A damaged filter names every key: look-ups, never a second order.
        assert!(Forgotten::decode(b"short").may_contain("id:anything"));
    }

    #[test]
    fn a_filter_of_3000_keys_names_about_one_percent_of_others() {
        let mut f = Forgotten::new();
        for i in 0..3_000 {
            f.insert(&format!("id:in{i}"));
        }
        assert!((0..3_000).all(|i| f.may_contain(&format!("id:in{i}"))));
        let false_hits = (0..10_000)
            .filter(|i| f.may_contain(&format!("id:out{i}")))
            .count();
        assert!(false_hits < 300, "{false_hits} of 10,000");
    }

    /// Every interleaving of the counter increments of `arrivals` (ms): how many own the
    /// alert, for each interleaving. A delivery increments its counters in order, stops at
    /// the first that is not 1, and owns the alert when every one was 1.
    fn owners_in_every_interleaving(k: &DedupeKey, arrivals: &[u64]) -> Vec<usize> {
        fn explore(
            keys: &[Vec<String>],
            next: &mut Vec<usize>,
            lost: &mut Vec<bool>,
            counters: &mut BTreeMap<String, i64>,
            out: &mut Vec<usize>,
        ) {
            let mut moved = false;
            for d in 0..keys.len() {
                if lost[d] || next[d] == keys[d].len() {
                    continue;
                }
                moved = true;
                let key = &keys[d][next[d]];
                *counters.entry(key.clone()).or_default() += 1;
                let won = counters[key] == 1;
                next[d] += 1;
                lost[d] = !won;
                explore(keys, next, lost, counters, out);
                lost[d] = false;
                next[d] -= 1;
                *counters.get_mut(key).unwrap() -= 1;
            }
            if !moved {
                out.push((0..keys.len()).filter(|&d| !lost[d]).count());
            }
        }
        let keys: Vec<Vec<String>> = arrivals.iter().map(|&t| k.claim_keys(t)).collect();
        let mut out = Vec::new();
        explore(
            &keys,
            &mut vec![0; keys.len()],
            &mut vec![false; keys.len()],
            &mut BTreeMap::new(),
            &mut out,
        );
        out
    }

    #[test]
    fn deliveries_across_a_slot_edge_leave_exactly_one_owner_in_every_interleaving() {
        let k = DedupeKey::new(Some("a"), b"");
        let edge = 1_010_000;
        // Seen on a fleet: deliveries a few ms either side of an edge, each winning its own
        // slot's counter and losing the other's, left no owner (and answered `in flight`).
        let cases: &[&[u64]] = &[
            &[edge - 5, edge + 5],
            &[edge + 5, edge - 5],
            &[edge - 5, edge + 5, edge - 1, edge + 1],
            &[edge - 999, edge, edge + 998],
            &[edge - 400, edge + 600],
            &[edge + 999, edge + 1_000, edge + 1_500],
            &[edge - 1_001, edge - 1_000, edge - 2],
            &[edge + 4_000, edge + 4_500, edge + 4_999],
        ];
        for arrivals in cases {
            let owners = owners_in_every_interleaving(&k, arrivals);
            assert!(owners.len() > 1, "{arrivals:?}");
            assert!(
                owners.iter().all(|&n| n == 1),
                "{arrivals:?}: owners per interleaving {owners:?}"
            );
        }
    }

    #[test]
    fn simultaneous_deliveries_share_a_claim_counter_later_alerts_do_not() {
        let k = DedupeKey::new(Some("a"), b"");
        // Mid-slot: one counter. Within a second of an edge: that slot's and its neighbour's.
        assert_eq!(k.claim_keys(1_005_000), ["dc:10:100:id:a".to_string()]);
        assert_eq!(
            k.claim_keys(1_000_400),
            ["dc:10:99:id:a".to_string(), "dc:10:100:id:a".into()]
        );
        assert_eq!(
            k.claim_keys(1_009_000),
            ["dc:10:100:id:a".to_string(), "dc:10:101:id:a".into()]
        );
        let mut doubles = 0;
        for t in (0..100_000u64).step_by(37) {
            doubles += usize::from(k.claim_keys(t).len() == 2);
            // Less than the claim window apart: a common counter.
            for d in [0, 1, 250, 999] {
                let (a, b) = (k.claim_keys(t), k.claim_keys(t + d));
                assert!(a.iter().any(|x| b.contains(x)), "{t} {d}");
            }
            // A lifetime apart (the shortest is two slots): none.
            let (a, b) = (k.claim_keys(t), k.claim_keys(t + MIN_TTL_SECS * 1_000));
            assert!(!a.iter().any(|x| b.contains(x)), "{t}");
        }
        // About one delivery in five needs a second increment (slot 0 has no previous).
        let all = (0..100_000u64).step_by(37).count();
        assert!(
            (18..=20).contains(&(doubles * 100 / all)),
            "{doubles} of {all}"
        );
        let body = DedupeKey::new(None, b"x");
        assert_eq!(body.ttl(1), MIN_TTL_SECS);
    }

    #[test]
    fn stale_and_released_records() {
        let r = Record {
            state: RecordState::InFlight,
            first_seen: 100,
            cl_ord_id: "c".into(),
            status: 0,
            body: Value::Null,
            owner: "r".into(),
            claimed_at: 0,
        };
        assert!(!r.is_stale(100 + IN_FLIGHT_STALE_SECS));
        assert!(r.is_stale(101 + IN_FLIGHT_STALE_SECS));
        // A takeover restarts the clock, the horizon stays.
        let taken = Record {
            claimed_at: 200,
            ..r.clone()
        };
        assert!(!taken.is_stale(205));
        assert!(taken.is_live(150, 60));
        let released = Record {
            state: RecordState::Released,
            ..r
        };
        assert!(!released.is_stale(1_000));
        assert_eq!(released.duplicate_body()["outcome"], "in_flight");
    }

    #[test]
    fn cl_ord_id_is_kraken_short_uuid_form() {
        let id = DedupeKey::new(Some("x"), b"").cl_ord_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // An id that looks like a body hash still differs from that body's key.
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_ne!(
            DedupeKey::new(Some(h), b"").cl_ord_id(),
            DedupeKey::new(None, b"abc").cl_ord_id()
        );
    }
}
