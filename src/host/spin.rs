//! The Spin flavour: settings from Spin variables (`fermyon:spin/variables`), the client
//! address from Spin's `spin-client-addr` header, state in Spin key-value.

/// The flavour's name in `/health`.
pub const NAME: &str = "spin";

/// The key-value store this flavour uses.
pub const STATE_STORE: Option<&str> = Some("default");

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
