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
pub use chained::{serve_store, store, store_component, STORE_PROBE};
#[cfg(feature = "host-spin-noatomics")]
pub use plain::{serve_store, store, store_component, STORE_PROBE};

/// The store operations of the default build, each performed by the app's store
/// component (Spin's service chaining) and waited for until its deadline only: a store
/// call that hangs (a Redis down or stopped, an SQLite file locked by another process)
/// holds that component's instance, never the alert's answer. An app without the store
/// component (its `allowed_outbound_hosts` does not list it) gets the direct calls, which
/// no one can bound.
#[cfg(not(feature = "host-spin-noatomics"))]
mod chained {
    use super::atomic;
    use crate::host::outbound;
    use crate::kraken::reply::Transport;
    use crate::kraken::request::Call;
    use crate::store::{
        StoreLimit, StoreOp, StoreReply, StoreRequest, ANSWER_GRACE_MS, ROLE_VARIABLE, STORE_URL,
    };
    use std::cell::Cell;

    /// How long `/health` waits for the store.
    const PROBE_MS: u64 = 1_000;
    /// The key `/health` reads: the refused Kraken keys' record, which it reports.
    const PROBE_KEY: &str = crate::refused_keys::KEY;

    /// `/health` asks the store for one key, bounded.
    pub const STORE_PROBE: Option<crate::bridge::StoreProbe> = Some(probe);

    thread_local! {
        /// The app has no store component (the request was refused as not allowed).
        static DIRECT: Cell<bool> = const { Cell::new(false) };
    }

    fn wall_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Performs one operation within its limit.
    pub fn store(op: StoreOp, limit: &StoreLimit) -> StoreReply {
        match chained(&op, limit) {
            Some(reply) => reply,
            None => atomic::store(op),
        }
    }

    /// `None`: the app has no store component.
    fn chained(op: &StoreOp, limit: &StoreLimit) -> Option<StoreReply> {
        if DIRECT.get() {
            return None;
        }
        let now = wall_ms();
        if now >= limit.deadline_ms {
            return Some(StoreReply::NoAnswer(format!(
                "no time left for the state store ({} ms past the deadline)",
                now - limit.deadline_ms
            )));
        }
        let wait = limit.deadline_ms - now + ANSWER_GRACE_MS;
        let request = StoreRequest {
            op: op.clone(),
            limit: limit.clone(),
        };
        let call = Call {
            method: "POST",
            url: STORE_URL.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: request.encode(),
            kraken_method: "store",
            timeout_ms: wait,
        };
        Some(match outbound::send(&call) {
            Transport::Reply { status: 200, body } => {
                StoreReply::decode(&body).unwrap_or_else(|| {
                    StoreReply::Failed("unreadable answer from the store component".into())
                })
            }
            Transport::Reply { status, .. } => {
                StoreReply::Failed(format!("the store component answered HTTP {status}"))
            }
            Transport::NotSent(e) if e.contains("HttpRequestDenied") => {
                DIRECT.set(true);
                return None;
            }
            Transport::NotSent(e) => StoreReply::Failed(format!("the state store: {e}")),
            Transport::Lost(e) => StoreReply::NoAnswer(format!("the state store: {e}")),
        })
    }

    fn probe() -> Result<(&'static str, Option<Vec<u8>>), String> {
        let limit = StoreLimit {
            deadline_ms: wall_ms() + PROBE_MS,
            on_late: None,
        };
        match chained(&StoreOp::Get(PROBE_KEY.into()), &limit) {
            // Not bounded, so not asked: `/health` must answer whatever the store does.
            None => Ok(("direct", None)),
            Some(StoreReply::Value(v)) => Ok(("bounded", v)),
            Some(StoreReply::Failed(e) | StoreReply::NoAnswer(e)) => Err(e),
            Some(other) => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// Whether this instance is the store component: its `bridge_role` variable says so
    /// (the public component has no such variable), and Spin routes only chained requests
    /// to it (a private route).
    pub fn store_component(_headers: &[(String, String)]) -> bool {
        spin_sdk::variables::get(ROLE_VARIABLE).is_ok_and(|v| v == "store")
    }

    /// The store component's side: performs the request's operation on the store.
    pub fn serve_store(request: &[u8]) -> StoreReply {
        crate::store::serve(request, atomic::store, wall_ms)
    }
}

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

    /// No bounded way to ask the store: `/health` does not.
    pub const STORE_PROBE: Option<crate::bridge::StoreProbe> = None;

    /// This build has no store component.
    pub fn store_component(_headers: &[(String, String)]) -> bool {
        false
    }

    /// Never called: see [`store_component`].
    pub fn serve_store(_request: &[u8]) -> StoreReply {
        StoreReply::Failed("no store component in this build".into())
    }

    /// Performs one operation on the `default` store through `fermyon:spin/key-value`
    /// (not bounded: this build has no store component).
    pub fn store(op: StoreOp, _limit: &crate::store::StoreLimit) -> StoreReply {
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
