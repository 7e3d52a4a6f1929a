//! A simulator of Kraken's spot REST API for tests and local trials.
//!
//! Kraken has no spot sandbox, so the bridge's tests talk to this simulator
//! over loopback HTTP. It authenticates requests exactly as Kraken documents
//! (`API-Key`, `API-Sign`, nonces), validates `AddOrder` with Kraken's rules
//! and error strings, books and fills orders against a small pair table (or,
//! with [`SimOptions::realistic_pairs`], one of Kraken's size and shape: see
//! [`realistic_market`]), and can inject faults (delays, dropped connections,
//! HTTP errors, Kraken errors) per request. With a [`RateTier`] set it also enforces Kraken's REST rate
//! counter per API key (off by default).
//!
//! - [`model`]: the exchange itself, with no I/O: accounts and their key
//!   permissions ([`Permission`]), the REST rate
//!   counter ([`RateTier`], [`model::rest_cost`]), `AddOrder` checks, orders,
//!   faults and the request log ([`RequestRecord`], including how each body
//!   was framed).
//! - [`server`]: the HTTP front ([`Sim`]) on its own runtime and thread.
//! - [`sign`]: `API-Sign` computation and verification.
//! - [`params`]: form/JSON body decoding.
//! - [`errors`]: the error strings answered.
//! - [`time`]: the UTC timestamp formats Kraken uses.
//!
//! ```no_run
//! use kraken_sim::{Fault, FaultKind, RateTier, Sim, SimOptions};
//!
//! let sim = Sim::start(SimOptions::default());
//! sim.push_fault(Fault::on("AddOrder", FaultKind::DropAfterBook));
//! // … point the client at sim.url() with key `sim-api-key-local` …
//! assert!(sim.orders().len() <= 1);
//!
//! // Kraken's REST rate limit, with time under the test's control.
//! sim.set_rate_tier(Some(RateTier::Starter));
//! sim.freeze_clock();
//! // … 15 `Balance` calls pass, the 16th is refused …
//! sim.advance_clock(1.0 / 0.33); // … and one more passes.
//! assert!(sim.rest_counter("sim-api-key-local") <= 15.0);
//! ```

pub mod errors;
pub mod model;
pub mod params;
pub mod server;
pub mod sign;
pub mod time;

pub use model::{
    realistic_asset_pairs_body, realistic_market, realistic_pairs, Account, BookedOrder, Exchange,
    Fault, FaultKind, OrderStatus, Pair, Permission, RateTier, RequestRecord, KRAKEN_PAIR_COUNT,
};
pub use params::Params;
pub use server::{Sim, SimOptions};
