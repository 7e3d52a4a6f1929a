//! Kraken's error strings, exactly as the simulator answers them.
//!
//! API errors are answered with HTTP 200 and `{"error":[<string>]}`.

/// Unknown or missing `API-Key`.
pub const INVALID_KEY: &str = "EAPI:Invalid key";
/// Bad or missing `API-Sign`, or missing/wrong `otp` on a 2FA key.
pub const INVALID_SIGNATURE: &str = "EAPI:Invalid signature";
/// The key lacks the permission the method needs (see
/// [`Permission::for_method`](crate::model::Permission::for_method)).
pub const PERMISSION_DENIED: &str = "EGeneral:Permission denied";
/// Nonce missing, or not greater than the last accepted nonce of the key.
pub const INVALID_NONCE: &str = "EAPI:Invalid nonce";
/// REST rate counter exceeded: a refusal by the counter (with a rate tier
/// set) or the injected `RateLimit` fault. Answered as
/// `{"error":["EAPI:Rate limit exceeded"],"result":{}}`.
pub const RATE_LIMIT: &str = "EAPI:Rate limit exceeded";
/// Method not served by the simulator.
pub const UNKNOWN_METHOD: &str = "EGeneral:Unknown method";
/// Pair not found by id, altname or wsname.
pub const UNKNOWN_PAIR: &str = "EQuery:Unknown asset pair";
/// `volume` below the pair's `ordermin`.
pub const ORDER_MINIMUM: &str = "EOrder:Order minimum not met";
/// `volume × price` below the pair's `costmin`.
pub const COST_MINIMUM: &str = "EOrder:Cost minimum not met";
/// Price not a multiple of the pair's `tick_size`.
pub const TICK_SIZE: &str = "EOrder:Tick size check failed";
/// `cl_ord_id` already used by an open order of the account. Kraken documents
/// the uniqueness rule but not the error text; this string is the one seen
/// in client error maps and may differ from the live exchange.
pub const DUPLICATE_ORDER: &str = "EOrder:Duplicate order";
/// Free balance (balance minus holds of open orders) too small.
pub const INSUFFICIENT_FUNDS: &str = "EOrder:Insufficient funds";
/// `deadline` already passed when the request was handled.
pub const DEADLINE_ELAPSED: &str = "EService:Deadline elapsed";
/// Engine unavailable (system status `maintenance`).
pub const UNAVAILABLE: &str = "EService:Unavailable";
/// Unknown txid / userref / cl_ord_id for an order query or cancel.
pub const UNKNOWN_ORDER: &str = "EOrder:Unknown order";
/// `settle-position` on an account without margin positions.
pub const UNKNOWN_POSITION: &str = "EOrder:Unknown position";

/// `EGeneral:Invalid arguments:<param>`.
pub fn invalid_arguments(param: &str) -> String {
    format!("EGeneral:Invalid arguments:{param}")
}

/// `EOrder:Invalid price:<ALTNAME> price can only be specified up to N decimals.`
pub fn invalid_price_decimals(altname: &str, decimals: u32) -> String {
    format!("EOrder:Invalid price:{altname} price can only be specified up to {decimals} decimals.")
}

/// `EService:Market in <status> mode`, for a pair or system status that
/// refuses the order (`cancel_only`, `post_only`, `limit_only`, …).
pub fn market_mode(status: &str) -> String {
    format!("EService:Market in {status} mode")
}
