//! The state store as data: the operations the core asks the adapter to perform on the
//! host's key-value store (Spin's `default` store) and what comes back.
//!
//! Two kinds of host exist. Spin 3.1 and later implement `wasi:keyvalue/atomics` (exactly
//! from 3.2, which dropped 3.1's per-instance write-behind cache), whose `increment` and
//! compare-and-swap are atomic across every instance that shares the store:
//! the claim of [`crate::outcome`] rests on them. Hosts without atomics (Spin before 3.1,
//! Akamai Functions) answer those operations [`StoreReply::Unsupported`], and the core falls
//! back to a write-and-read-back claim with a Kraken look-up before every order.

/// One operation on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Read a key.
    Get(String),
    /// Write a key.
    Set(String, Vec<u8>),
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
        expected: Vec<u8>,
        /// The value to write.
        new: Vec<u8>,
    },
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    /// The value of a `Get` (`None`: no such key).
    Value(Option<Vec<u8>>),
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
