//! The Spin flavour: settings from Spin variables (`fermyon:spin/variables`), the client
//! address from Spin's `spin-client-addr` header, state in Spin's `default` key-value store.
//!
//! The default build reaches the store through `wasi:keyvalue` (store and atomics, Spin
//! 3.2 and later; 3.1.x has them behind a per-instance write-behind cache), whose `increment` and compare-and-swap make the claim atomic across
//! instances. The `host-spin-noatomics` build uses `fermyon:spin/key-value` only, for hosts
//! without atomics (Spin before 3.1, Akamai Functions): it answers the atomic operations
//! `Unsupported`, and the core falls back to a look-up on Kraken before every order.

/// The flavour's name in `/health`.
#[cfg(not(feature = "host-spin-noatomics"))]
pub const NAME: &str = "spin";
/// The flavour's name in `/health`.
#[cfg(feature = "host-spin-noatomics")]
pub const NAME: &str = "spin-noatomics";

/// The key-value store this flavour uses.
pub const STATE_STORE: Option<&str> = Some("default");

use crate::store::{StoreOp, StoreReply};

#[cfg(not(feature = "host-spin-noatomics"))]
pub use atomic::store;
#[cfg(feature = "host-spin-noatomics")]
pub use plain::store;

#[cfg(not(feature = "host-spin-noatomics"))]
mod atomic {
    use super::{StoreOp, StoreReply};
    use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
    use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket};
    use std::cell::OnceCell;

    thread_local! {
        /// The `default` store, opened once per instance.
        static BUCKET: OnceCell<Result<Bucket, String>> = const { OnceCell::new() };
    }

    /// Performs one operation on the `default` store through `wasi:keyvalue`.
    pub fn store(op: StoreOp) -> StoreReply {
        BUCKET.with(|cell| {
            match cell.get_or_init(|| store::open("default").map_err(|e| format!("{e:?}"))) {
                Ok(bucket) => run(bucket, op),
                Err(e) => StoreReply::Failed(e.clone()),
            }
        })
    }

    fn run(bucket: &Bucket, op: StoreOp) -> StoreReply {
        let failed = |e: store::Error| StoreReply::Failed(format!("{e:?}"));
        match op {
            StoreOp::Get(key) => bucket.get(&key).map_or_else(failed, StoreReply::Value),
            StoreOp::Set(key, value) => bucket
                .set(&key, &value)
                .map_or_else(failed, |()| StoreReply::Done),
            StoreOp::Delete(key) => bucket
                .delete(&key)
                .map_or_else(failed, |()| StoreReply::Done),
            StoreOp::Keys => {
                let mut keys = Vec::new();
                let mut cursor = None;
                loop {
                    match bucket.list_keys(cursor.as_deref()) {
                        Ok(page) => {
                            keys.extend(page.keys);
                            match page.cursor {
                                Some(next) => cursor = Some(next),
                                None => return StoreReply::Keys(keys),
                            }
                        }
                        Err(e) => return failed(e),
                    }
                }
            }
            StoreOp::Increment(key, delta) => {
                atomics::increment(bucket, &key, delta).map_or_else(failed, StoreReply::Count)
            }
            StoreOp::Swap { key, expected, new } => {
                let cas = match Cas::new(bucket, &key) {
                    Ok(cas) => cas,
                    Err(e) => return failed(e),
                };
                // Only from the value read now: a swap from an absent key is an upsert on
                // Spin's SQLite store, never a claim.
                match cas.current() {
                    Ok(Some(current)) if current == expected => {}
                    Ok(_) => return StoreReply::Swapped(false),
                    Err(e) => return failed(e),
                }
                match atomics::swap(cas, &new) {
                    Ok(()) => StoreReply::Swapped(true),
                    Err(CasError::CasFailed(_)) => StoreReply::Swapped(false),
                    Err(CasError::StoreError(e)) => failed(e),
                }
            }
        }
    }
}

#[cfg(feature = "host-spin-noatomics")]
mod plain {
    use super::{StoreOp, StoreReply};
    use spin_sdk::key_value::Store;

    /// Performs one operation on the `default` store through `fermyon:spin/key-value`.
    pub fn store(op: StoreOp) -> StoreReply {
        let store = match Store::open_default() {
            Ok(s) => s,
            Err(e) => return StoreReply::Failed(format!("{e:?}")),
        };
        let result = match op {
            StoreOp::Get(key) => store.get(&key).map(StoreReply::Value),
            StoreOp::Set(key, value) => store.set(&key, &value).map(|()| StoreReply::Done),
            StoreOp::Delete(key) => store.delete(&key).map(|()| StoreReply::Done),
            StoreOp::Keys => store.get_keys().map(StoreReply::Keys),
            StoreOp::Increment(..) | StoreOp::Swap { .. } => Ok(StoreReply::Unsupported),
        };
        result.unwrap_or_else(|e| StoreReply::Failed(format!("{e:?}")))
    }
}

/// A setting from Spin variables; an undefined or empty variable is unset.
pub fn setting(name: &str) -> Option<String> {
    spin_sdk::variables::get(name).ok()
}

/// Spin sets `spin-client-addr` (`ip:port`) itself and overwrites any value a client sends.
pub fn client_addr(headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == "spin-client-addr")
        .map(|(_, v)| v.clone())
}
