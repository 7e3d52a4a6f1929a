//! TradingView alert webhook → Kraken spot orders, as one WebAssembly component.
//!
//! Everything outside [`host`] is a sans-IO core: it never reads a clock, a variable, a store
//! or the network. [`bridge::handle`] takes a request and returns a [`bridge::Step`]; the
//! host adapter (`src/host/`, the only code that touches `spin_sdk`) performs the calls the
//! core asks for and writes its audit lines. Native `cargo test` runs the whole core.
//!
//! The public interface is:
//! - [`bridge`]: the handler state machine ([`bridge::handle`], [`bridge::Pending::resume`]).
//! - [`config::Config`]: settings from a lookup function.
//! - the concerns, one module each, named from the contract: [`route`], [`auth`], [`alert`],
//!   [`plan`], [`idempotency`], [`turn`], [`kraken`], [`reject`], [`response`], [`audit`], [`secret`].

#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]
#![cfg_attr(target_arch = "wasm32", deny(unsafe_code))]
#![warn(missing_docs)]

pub mod account;
pub mod alert;
pub mod audit;
pub mod auth;
pub mod bridge;
pub mod config;
pub mod decimal;
pub mod idempotency;
pub mod kraken;
pub mod network;
pub mod notify;
pub mod outcome;
pub mod plan;
pub mod rate_limit;
pub mod refused_keys;
pub mod reject;
pub mod response;
pub mod rounding;
pub mod route;
pub mod secret;
pub mod store;
pub mod time;
pub mod turn;

#[cfg(target_arch = "wasm32")]
mod host;
