//! The dedupe key of an alert and the Kraken `cl_ord_id` derived from it (contract 2.4).
//!
//! The key is the alert's `id`, or else the SHA-256 of the raw body, so TradingView's resend
//! of the same alert maps to the same key and the same `cl_ord_id`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long an `id` key is kept, in seconds (contract 2.4).
pub const ID_TTL_SECS: u64 = 24 * 60 * 60;

/// A claim older than this belongs to a request that died: its alert is looked up on Kraken
/// by `cl_ord_id` before anything is sent again.
pub const IN_FLIGHT_STALE_SECS: u64 = 10;

/// The prefix of dedupe keys.
pub const PREFIX: &str = "dd:";

/// At most this many keys are kept (Fermyon Cloud caps a store at 1,024); beyond it the
/// oldest dedupe records are pruned first.
pub const MAX_KEYS: usize = 900;

/// At most this many deletions per request, to stay inside the time budget.
pub const MAX_DELETES_PER_REQUEST: usize = 16;

/// Where a dedupe key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeKey {
    /// The alert's `id`.
    Id(String),
    /// Lower-case hex SHA-256 of the raw body.
    BodyHash(String),
}

impl DedupeKey {
    /// The key for an alert with an optional `id` and the given raw body.
    pub fn new(id: Option<&str>, body: &[u8]) -> DedupeKey {
        match id {
            Some(id) => DedupeKey::Id(id.to_string()),
            None => DedupeKey::BodyHash(hex(&Sha256::digest(body))),
        }
    }

    /// The key as stored, prefixed by its kind so an `id` can never collide with a hash.
    pub fn as_store_key(&self) -> String {
        match self {
            DedupeKey::Id(id) => format!("id:{id}"),
            DedupeKey::BodyHash(h) => format!("body:{h}"),
        }
    }

    /// How long this key is kept: `window_secs` for a body hash, 24 hours for an `id`.
    pub fn ttl(&self, window_secs: u64) -> u64 {
        match self {
            DedupeKey::Id(_) => ID_TTL_SECS,
            DedupeKey::BodyHash(_) => window_secs.max(1),
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
}

impl Record {
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

    /// The `200 duplicate` body: the first outcome's fields, its `status` renamed `outcome`.
    pub fn duplicate_body(&self) -> Value {
        let mut body = match &self.body {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let outcome = match self.state {
            RecordState::InFlight => Value::from("in_flight"),
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

/// The keys to delete now, given every key in the store: expired dedupe buckets and
/// rate-limit minutes first, then, above [`MAX_KEYS`], the oldest dedupe records; at most
/// [`MAX_DELETES_PER_REQUEST`].
pub fn prune(keys: &[String], now_secs: u64) -> Vec<String> {
    let mut dedupe: Vec<(u64, &String)> = Vec::new();
    let mut delete: Vec<&String> = Vec::new();
    for key in keys {
        if crate::rate_limit::is_expired(key, now_secs) {
            delete.push(key);
        } else if let Some((len, bucket)) = bucket_of(key) {
            // A record in bucket b is looked up until bucket b + 1 ends.
            if (bucket + 2).saturating_mul(len) <= now_secs {
                delete.push(key);
            } else {
                dedupe.push((bucket.saturating_mul(len), key));
            }
        }
    }
    let live = keys.len() - delete.len();
    if live > MAX_KEYS {
        dedupe.sort();
        delete.extend(dedupe.iter().take(live - MAX_KEYS).map(|(_, k)| *k));
    }
    delete
        .into_iter()
        .take(MAX_DELETES_PER_REQUEST)
        .cloned()
        .collect()
}

fn bucket_of(key: &str) -> Option<(u64, u64)> {
    let mut parts = key.strip_prefix(PREFIX)?.splitn(3, ':');
    let len = parts.next()?.parse().ok()?;
    let bucket = parts.next()?.parse().ok()?;
    Some((len, bucket))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            k,
            DedupeKey::BodyHash(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
        assert_ne!(k.cl_ord_id(), DedupeKey::new(None, b"abd").cl_ord_id());
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
        };
        assert_eq!(refused.duplicate_body()["outcome"], "order_rejected");
        assert_eq!(
            refused.duplicate_body()["kraken_error"],
            "EOrder:Insufficient funds"
        );
    }

    #[test]
    fn pruning_drops_expired_keys_and_bounds_the_store() {
        let now = 10_000;
        let keys: Vec<String> = vec![
            "dd:60:166:body:a".into(), // current bucket (166*60 = 9960)
            "dd:60:165:body:b".into(), // previous: still looked up
            "dd:60:164:body:c".into(), // expired
            "dd:86400:0:id:x".into(),  // bucket 0 of a day: live until 2 days
            "rl:166".into(),
            "rl:165".into(),
            "rl:164".into(), // expired
            "unrelated".into(),
        ];
        let mut gone = prune(&keys, now);
        gone.sort();
        assert_eq!(gone, ["dd:60:164:body:c", "rl:164"]);

        let many: Vec<String> = (0..MAX_KEYS + 5)
            .map(|i| format!("dd:86400:0:id:k{i:04}"))
            .collect();
        assert_eq!(prune(&many, now).len(), 5);
        let lots: Vec<String> = (0..100).map(|i| format!("dd:60:1:body:{i}")).collect();
        assert_eq!(prune(&lots, now).len(), MAX_DELETES_PER_REQUEST);
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
