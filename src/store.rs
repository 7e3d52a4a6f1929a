//! The state store as data: the operations the core asks the adapter to perform on the
//! host's key-value store (Spin's `default` store) and what comes back.
//!
//! Two kinds of host exist. Spin 3.1 and later implement `wasi:keyvalue/atomics` (exactly
//! from 3.2, which dropped 3.1's per-instance write-behind cache), whose `increment` and
//! compare-and-swap are atomic across every instance that shares the store:
//! the claim of [`crate::outcome`] rests on them. Hosts without atomics (Spin before 3.1,
//! Akamai Functions) answer those operations [`StoreReply::Unsupported`], and the core falls
//! back to a write-and-read-back claim with a Kraken look-up before every order.
//!
//! A store call is a synchronous host call that no guest can interrupt, and Spin's stores
//! can hang for minutes (a Redis that is down or stopped, an SQLite file locked by another
//! process). So the Spin build does not call the store itself: it sends each operation as a
//! [`StoreRequest`] to a private component of its own app (Spin's service chaining,
//! [`STORE_URL`]), which performs it with [`serve`], and the caller stops waiting at the
//! request's deadline. A write that lands after its deadline is undone by the store
//! component itself ([`StoreLimit::on_late`]), once the store answers again.

use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The store component's id in `spin.toml` (a private route).
pub const STORE_COMPONENT: &str = "bridge-store";
/// Where the bridge sends its store operations: the store component, through Spin's
/// service chaining (`allowed_outbound_hosts` must list `http://bridge-store.spin.internal`).
pub const STORE_URL: &str = "http://bridge-store.spin.internal/.store";
/// The path the store component serves.
pub const STORE_PATH: &str = "/.store";
/// The variable that makes an instance the store component (`bridge_role = "store"` in the
/// store component's `[component.bridge-store.variables]`); the public component has none.
pub const ROLE_VARIABLE: &str = "bridge_role";
/// How long after an operation's deadline the caller still waits for the store
/// component's answer: the store component decides late or in time by its own clock, so
/// an answer sent just in time must still reach the caller.
pub const ANSWER_GRACE_MS: u64 = 200;

/// One operation on the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreOp {
    /// Read a key.
    Get(String),
    /// Write a key.
    Set(String, #[serde(with = "b64")] Vec<u8>),
    /// Delete a key.
    Delete(String),
    /// List every key.
    Keys,
    /// Atomically add the delta to the counter under the key (absent: 0) and return the new
    /// value ([`StoreReply::Count`]). Counters live under keys of their own: their bytes
    /// differ between backends, so they are never read with `Get`.
    Increment(String, i64),
    /// Atomically replace the key's value by `new` if it still is `expected`
    /// ([`StoreReply::Swapped`]). Only from an existing value: a swap from an absent key is
    /// not atomic on Spin's SQLite store.
    Swap {
        /// The key.
        key: String,
        /// The value the key must still hold.
        #[serde(with = "b64")]
        expected: Vec<u8>,
        /// The value to write.
        #[serde(with = "b64")]
        new: Vec<u8>,
    },
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreReply {
    /// The value of a `Get` (`None`: no such key).
    Value(#[serde(with = "b64_option")] Option<Vec<u8>>),
    /// A `Set` or `Delete` succeeded.
    Done,
    /// The answer to `Keys`.
    Keys(Vec<String>),
    /// The counter's value after an `Increment`.
    Count(i64),
    /// Whether a `Swap` replaced the value.
    Swapped(bool),
    /// The host has no atomic operations (`Increment`, `Swap`).
    Unsupported,
    /// The store failed; the text is for the audit log.
    Failed(String),
    /// The store did not answer by the operation's deadline (it may still perform it);
    /// the text is for the audit log.
    NoAnswer(String),
}

/// How long one operation may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreLimit {
    /// The operation must end by this wall-clock time, in Unix milliseconds; the caller
    /// stops waiting [`ANSWER_GRACE_MS`] later.
    pub deadline_ms: u64,
    /// What undoes the operation if it ends after its deadline, when the caller has given
    /// up on it: the release of a claim that the late write would otherwise leave in
    /// flight, blocking the resend.
    pub on_late: Option<StoreOp>,
}

/// One operation as the store component receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRequest {
    /// The operation.
    pub op: StoreOp,
    /// Its deadline and what undoes it when late.
    pub limit: StoreLimit,
}

impl StoreRequest {
    /// The request's bytes (JSON, values in base64).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a store request serialises")
    }

    /// Reads a request; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<StoreRequest> {
        serde_json::from_slice(bytes).ok()
    }
}

impl StoreReply {
    /// The reply's bytes (JSON, values in base64).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a store reply serialises")
    }

    /// Reads a reply; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<StoreReply> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The store component's whole job: performs the request's operation with `apply`, and
/// when it ended after its deadline (`now_ms` is the wall clock, read after it), performs
/// the request's `on_late` and answers [`StoreReply::NoAnswer`], which the caller, had it
/// still been waiting, would have taken for a failure too. A request that does not parse
/// touches nothing.
pub fn serve(
    request: &[u8],
    mut apply: impl FnMut(StoreOp) -> StoreReply,
    now_ms: impl Fn() -> u64,
) -> StoreReply {
    let Some(StoreRequest { op, limit }) = StoreRequest::decode(request) else {
        return StoreReply::Failed("unreadable store request".into());
    };
    let reply = apply(op);
    let ended = now_ms();
    if ended <= limit.deadline_ms {
        return reply;
    }
    if let Some(undo) = limit.on_late {
        apply(undo);
    }
    StoreReply::NoAnswer(format!(
        "the state store answered {} ms after the deadline",
        ended - limit.deadline_ms
    ))
}

mod b64 {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

mod b64_option {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&B64.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => B64.decode(text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// An in-memory store with the semantics of Spin's local (SQLite) store, for the core's
/// tests, the benchmark and the fuzzer: counters as 8 little-endian bytes, swaps only from
/// an existing value. With `atomics` off it answers the atomic operations `Unsupported`,
/// as a host without `wasi:keyvalue/atomics` does.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    /// Every key and value.
    pub map: std::collections::BTreeMap<String, Vec<u8>>,
    /// Whether `Increment` and `Swap` are supported.
    pub atomics: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            map: Default::default(),
            atomics: true,
        }
    }
}

impl MemoryStore {
    /// Performs one operation.
    pub fn apply(&mut self, op: StoreOp) -> StoreReply {
        match op {
            StoreOp::Get(k) => StoreReply::Value(self.map.get(&k).cloned()),
            StoreOp::Set(k, v) => {
                self.map.insert(k, v);
                StoreReply::Done
            }
            StoreOp::Delete(k) => {
                self.map.remove(&k);
                StoreReply::Done
            }
            StoreOp::Keys => StoreReply::Keys(self.map.keys().cloned().collect()),
            StoreOp::Increment(..) | StoreOp::Swap { .. } if !self.atomics => {
                StoreReply::Unsupported
            }
            StoreOp::Increment(k, delta) => {
                let old = match self.map.get(&k) {
                    None => 0,
                    Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
                        Ok(bytes) => i64::from_le_bytes(bytes),
                        Err(_) => return StoreReply::Failed("not a counter".into()),
                    },
                };
                let new = old.saturating_add(delta);
                self.map.insert(k, new.to_le_bytes().to_vec());
                StoreReply::Count(new)
            }
            StoreOp::Swap { key, expected, new } => {
                let same = self.map.get(&key) == Some(&expected);
                if same {
                    self.map.insert(key, new);
                }
                StoreReply::Swapped(same)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(op: StoreOp, deadline_ms: u64, on_late: Option<StoreOp>) -> Vec<u8> {
        StoreRequest {
            op,
            limit: StoreLimit {
                deadline_ms,
                on_late,
            },
        }
        .encode()
    }

    #[test]
    fn every_operation_and_reply_survives_the_wire() {
        let ops = [
            StoreOp::Get("k".into()),
            StoreOp::Set("k".into(), vec![0, 1, 255]),
            StoreOp::Delete("k".into()),
            StoreOp::Keys,
            StoreOp::Increment("c".into(), -3),
            StoreOp::Swap {
                key: "k".into(),
                expected: b"old".to_vec(),
                new: Vec::new(),
            },
        ];
        for op in ops {
            let bytes = request(op.clone(), 7, Some(StoreOp::Delete("x".into())));
            let back = StoreRequest::decode(&bytes).unwrap();
            assert_eq!(back.op, op);
            assert_eq!(back.limit.deadline_ms, 7);
        }
        let replies = [
            StoreReply::Value(None),
            StoreReply::Value(Some(vec![])),
            StoreReply::Value(Some(vec![0, 159, 146, 150])),
            StoreReply::Done,
            StoreReply::Keys(vec!["a".into(), "b".into()]),
            StoreReply::Count(-1),
            StoreReply::Swapped(true),
            StoreReply::Unsupported,
            StoreReply::Failed("boom".into()),
            StoreReply::NoAnswer("late".into()),
        ];
        for reply in replies {
            assert_eq!(StoreReply::decode(&reply.encode()), Some(reply));
        }
        assert_eq!(StoreReply::decode(b"{}"), None);
    }

    #[test]
    fn an_operation_in_time_answers_and_leaves_its_write() {
        let mut store = MemoryStore::default();
        let bytes = request(
            StoreOp::Set("claim".into(), b"mine".to_vec()),
            1_000,
            Some(StoreOp::Delete("claim".into())),
        );
        let reply = serve(&bytes, |op| store.apply(op), || 1_000);
        assert_eq!(reply, StoreReply::Done);
        assert_eq!(
            store.map.get("claim").map(Vec::as_slice),
            Some(&b"mine"[..])
        );
    }

    #[test]
    fn a_late_write_is_undone_and_answers_failed() {
        let mut store = MemoryStore::default();
        let bytes = request(
            StoreOp::Set("claim".into(), b"mine".to_vec()),
            1_000,
            Some(StoreOp::Set("claim".into(), b"released".to_vec())),
        );
        let reply = serve(&bytes, |op| store.apply(op), || 1_001);
        assert!(
            matches!(reply, StoreReply::NoAnswer(ref e) if e.contains("1 ms after")),
            "{reply:?}"
        );
        assert_eq!(
            store.map.get("claim").map(Vec::as_slice),
            Some(&b"released"[..])
        );
    }

    #[test]
    fn a_late_read_answers_failed_and_writes_nothing() {
        let mut store = MemoryStore::default();
        store.map.insert("k".into(), b"v".to_vec());
        let bytes = request(StoreOp::Get("k".into()), 10, None);
        let reply = serve(&bytes, |op| store.apply(op), || 5_000);
        assert!(matches!(reply, StoreReply::NoAnswer(_)));
        assert_eq!(store.map.len(), 1);
    }

    #[test]
    fn an_unreadable_request_touches_nothing() {
        let mut calls = 0;
        for body in [&b""[..], b"{", b"{\"op\":\"keys\"}", b"[1,2]"] {
            let reply = serve(
                body,
                |_| {
                    calls += 1;
                    StoreReply::Done
                },
                || 0,
            );
            assert!(matches!(reply, StoreReply::Failed(_)), "{body:?}");
        }
        assert_eq!(calls, 0);
    }
}
