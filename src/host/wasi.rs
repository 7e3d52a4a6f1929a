//! The portable flavour for any wasi:http host (`wasmtime serve -Scli`): settings from
//! environment variables named like the Spin variables but upper-case, no state store, and
//! no trusted client address (`wasmtime serve` passes client headers through untouched).

/// The flavour's name in `/health`.
pub const NAME: &str = "wasi";

/// No state store in this flavour.
pub const STATE_STORE: Option<&str> = None;

use crate::store::{StoreLimit, StoreOp, StoreReply};

/// No store to ask for `/health`.
pub const STORE_PROBE: Option<crate::bridge::StoreProbe> = None;

/// There is no store: the core never asks for one when `STATE_STORE` is `None`.
pub fn store(_op: StoreOp, _limit: &StoreLimit) -> StoreReply {
    StoreReply::Failed("no state store in the portable flavour".into())
}

/// A setting from the environment: `webhook_secret` is read from `WEBHOOK_SECRET`.
pub fn setting(name: &str) -> Option<String> {
    std::env::var(name.to_ascii_uppercase()).ok()
}

/// Never trusted in this flavour.
pub fn client_addr(_headers: &[(String, String)]) -> Option<String> {
    None
}

/// This flavour has no store component.
pub fn store_component(_headers: &[(String, String)]) -> bool {
    false
}

/// Never called: see [`store_component`].
pub fn serve_store(_request: &[u8]) -> StoreReply {
    StoreReply::Failed("no state store in the portable flavour".into())
}
