//! The Spin flavour: settings from Spin variables (`fermyon:spin/variables`), the client
//! address from Spin's `spin-client-addr` header, state in Spin key-value.

/// The flavour's name in `/health`.
pub const NAME: &str = "spin";

/// The key-value store this flavour uses.
pub const STATE_STORE: Option<&str> = Some("default");

use crate::store::{StoreOp, StoreReply};
use spin_sdk::key_value::Store;

/// Performs one operation on the `default` key-value store.
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
    };
    result.unwrap_or_else(|e| StoreReply::Failed(format!("{e:?}")))
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
