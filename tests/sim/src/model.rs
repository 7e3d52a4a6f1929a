//! Host-free model of Kraken's spot exchange: accounts, pairs, tickers,
//! request authentication, the REST rate counter, `AddOrder` checks, order
//! book-keeping, fault injection and the request log.
//!
//! The REST rate counter is off by default; [`Exchange::set_rate_tier`] turns
//! it on (see [`RateTier`] and [`rest_cost`] for Kraken's rules). It decays
//! with the same `now` the requests are handled at, so tests drive it
//! deterministically by choosing `now`.
//!
//! Nothing here does I/O or reads a clock: the HTTP front hands each request
//! and the current Unix time (`now`, seconds) to [`Exchange::private`] or
//! [`Exchange::public`] and sends back the [`Outcome`] / [`Reply`].

use crate::errors as e;
use crate::params::{parse_body, parse_form, Params};
use crate::{sign, time};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::str::FromStr;

/// Private methods served under `POST /0/private/<Method>`.
pub const PRIVATE_METHODS: [&str; 9] = [
    "AddOrder",
    "Balance",
    "BalanceEx",
    "OpenOrders",
    "ClosedOrders",
    "QueryOrders",
    "TradesHistory",
    "CancelAll",
    "CancelOrder",
];

/// Public methods served under `GET /0/public/<Method>`.
pub const PUBLIC_METHODS: [&str; 4] = ["AssetPairs", "Ticker", "Time", "SystemStatus"];

/// Kraken's `ordertype` enum.
pub const ORDER_TYPES: [&str; 10] = [
    "market",
    "limit",
    "iceberg",
    "stop-loss",
    "take-profit",
    "stop-loss-limit",
    "take-profit-limit",
    "trailing-stop",
    "trailing-stop-limit",
    "settle-position",
];

const OFLAGS: [&str; 5] = ["post", "fcib", "fciq", "nompp", "viqc"];

/// Page size of `ClosedOrders` and `TradesHistory`.
const CLOSED_PAGE: usize = 50;

/// Slack when comparing the REST counter with its maximum, so that float
/// rounding of `now` (about 2.4e-7 s at today's Unix times) and of the decay
/// rates cannot refuse a call that Kraken's arithmetic would allow.
const RATE_EPSILON: f64 = 1e-6;

// ---------------------------------------------------------------------------
// Accounts

/// An API key as configured for the simulator.
#[derive(Clone, PartialEq)]
pub struct Account {
    /// Public API key (`API-Key` header).
    pub api_key: String,
    /// Base64 API secret (the HMAC key once decoded).
    pub api_secret: String,
    /// Static 2FA password required as `otp` on every call, if set.
    pub otp: Option<String>,
    /// Initial balances by Kraken asset id (`ZUSD`, `XXBT`, …).
    pub balances: BTreeMap<String, Decimal>,
    /// What the key may do (default: every [`Permission`]). A private call
    /// that needs a permission the key lacks answers
    /// `EGeneral:Permission denied`.
    pub permissions: BTreeSet<Permission>,
    /// Further keys of the same Kraken account, `(api_key, api_secret)`:
    /// each with its own nonce sequence and REST counter, the account's
    /// `otp` and permissions, sharing its orders and balances.
    pub more_keys: Vec<(String, String)>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("otp", &self.otp.as_ref().map(|_| "<redacted>"))
            .field("balances", &self.balances)
            .field("permissions", &self.permissions)
            .field(
                "more_keys",
                &self.more_keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Account {
    /// API key of [`Account::test_default`].
    pub const TEST_API_KEY: &'static str = "sim-api-key-local";
    /// API secret of [`Account::test_default`]: the secret of Kraken's
    /// published signing example, so its official vector verifies.
    pub const TEST_API_SECRET: &'static str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

    /// An account with no balances, no 2FA and every permission.
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            otp: None,
            balances: BTreeMap::new(),
            permissions: Permission::ALL.into_iter().collect(),
            more_keys: Vec::new(),
        }
    }

    /// Adds a further key of this account (its own nonces and REST counter,
    /// the account's orders and balances).
    pub fn with_key(mut self, api_key: impl Into<String>, api_secret: impl Into<String>) -> Self {
        self.more_keys.push((api_key.into(), api_secret.into()));
        self
    }

    /// Gives the key exactly these permissions.
    pub fn with_permissions(mut self, permissions: impl IntoIterator<Item = Permission>) -> Self {
        self.permissions = permissions.into_iter().collect();
        self
    }

    /// Requires `otp` on every private call.
    pub fn with_otp(mut self, otp: impl Into<String>) -> Self {
        self.otp = Some(otp.into());
        self
    }

    /// Sets an initial balance. Panics if `value` is not a decimal.
    pub fn with_balance(mut self, asset: &str, value: &str) -> Self {
        let v = Decimal::from_str(value).unwrap_or_else(|_| panic!("bad balance {value:?}"));
        self.balances.insert(asset.to_string(), v);
        self
    }

    /// `sim-api-key-local` with the official example secret and ZUSD 100000,
    /// XXBT 2, XETH 20, SOL 500, XXDG 100000, ZEUR 50000, ADA 100000,
    /// USDT 50000.
    pub fn test_default() -> Self {
        Self::new(Self::TEST_API_KEY, Self::TEST_API_SECRET)
            .with_balance("ZUSD", "100000")
            .with_balance("XXBT", "2")
            .with_balance("XETH", "20")
            .with_balance("SOL", "500")
            .with_balance("XXDG", "100000")
            .with_balance("ZEUR", "50000")
            .with_balance("ADA", "100000")
            .with_balance("USDT", "50000")
    }
}

/// Live state of one API key.
#[derive(Clone)]
pub struct AccountState {
    /// Public API key.
    pub api_key: String,
    /// The account's first key: the account's orders and balances are kept
    /// under it, whichever of its keys placed or moved them (itself for a
    /// first key).
    pub owner: String,
    secret: Vec<u8>,
    /// Required `otp`, if any.
    pub otp: Option<String>,
    /// Last accepted nonce (0 before the first one).
    pub last_nonce: u64,
    /// Balances by asset id, including funds held by open orders.
    pub balances: BTreeMap<String, Decimal>,
    /// The key's REST rate counter (stays at 0 while no tier is set).
    pub rest: RestCounter,
    /// What the key may do.
    pub permissions: BTreeSet<Permission>,
}

impl fmt::Debug for AccountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountState")
            .field("api_key", &self.api_key)
            .field("last_nonce", &self.last_nonce)
            .field("balances", &self.balances)
            .field("rest", &self.rest)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Key permissions

/// A permission of a Kraken API key, as Kraken's key settings list them.
///
/// Serializes as, and parses from, its [`name`](Permission::name)
/// (`query_funds`, …); [`FromStr`] also takes Kraken's
/// [`label`](Permission::label) (`Query funds`, any case). Which private
/// methods need which permission: [`Permission::for_method`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// "Funds permissions: Query": `Balance`, `BalanceEx`.
    QueryFunds,
    /// "Orders and trades: Query open orders & trades": `OpenOrders`,
    /// `QueryOrders`.
    QueryOpenOrders,
    /// "Orders and trades: Query closed orders & trades": `ClosedOrders`,
    /// `QueryOrders`, `TradesHistory`.
    QueryClosedOrders,
    /// "Orders and trades: Create & modify orders": `AddOrder`, with or
    /// without `validate`.
    CreateOrders,
    /// "Orders and trades: Cancel & close orders": `CancelOrder`,
    /// `CancelAll`.
    CancelOrders,
}

impl Permission {
    /// Every permission the simulator models (a new account has them all).
    pub const ALL: [Permission; 5] = [
        Permission::QueryFunds,
        Permission::QueryOpenOrders,
        Permission::QueryClosedOrders,
        Permission::CreateOrders,
        Permission::CancelOrders,
    ];

    /// `query_funds`, `query_open_orders`, `query_closed_orders`,
    /// `create_orders`, `cancel_orders`.
    pub fn name(self) -> &'static str {
        match self {
            Permission::QueryFunds => "query_funds",
            Permission::QueryOpenOrders => "query_open_orders",
            Permission::QueryClosedOrders => "query_closed_orders",
            Permission::CreateOrders => "create_orders",
            Permission::CancelOrders => "cancel_orders",
        }
    }

    /// The name in Kraken's API key settings.
    pub fn label(self) -> &'static str {
        match self {
            Permission::QueryFunds => "Query funds",
            Permission::QueryOpenOrders => "Query open orders & trades",
            Permission::QueryClosedOrders => "Query closed orders & trades",
            Permission::CreateOrders => "Create & modify orders",
            Permission::CancelOrders => "Cancel & close orders",
        }
    }

    /// The permissions any one of which lets a key call private `method`
    /// (Kraken's documentation of each method); empty for a method that
    /// needs none of the modelled ones.
    pub fn for_method(method: &str) -> &'static [Permission] {
        match method {
            "Balance" | "BalanceEx" => &[Permission::QueryFunds],
            "OpenOrders" => &[Permission::QueryOpenOrders],
            "ClosedOrders" | "TradesHistory" => &[Permission::QueryClosedOrders],
            "QueryOrders" => &[Permission::QueryOpenOrders, Permission::QueryClosedOrders],
            "AddOrder" => &[Permission::CreateOrders],
            "CancelOrder" | "CancelAll" => &[Permission::CancelOrders],
            _ => &[],
        }
    }

    /// A comma list of permissions (names or labels); `all` for every one,
    /// `none` or an empty text for none.
    pub fn parse_list(text: &str) -> Result<BTreeSet<Permission>, String> {
        match text.trim() {
            t if t.eq_ignore_ascii_case("all") => Ok(Permission::ALL.into_iter().collect()),
            t if t.is_empty() || t.eq_ignore_ascii_case("none") => Ok(BTreeSet::new()),
            t => t
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(Permission::from_str)
                .collect(),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Permission::ALL
            .into_iter()
            .find(|p| t == p.name() || t.eq_ignore_ascii_case(p.label()))
            .ok_or_else(|| {
                let names: Vec<_> = Permission::ALL.iter().map(|p| p.name()).collect();
                format!("unknown permission {t:?} ({})", names.join(", "))
            })
    }
}

// ---------------------------------------------------------------------------
// REST rate limit

/// Kraken's REST rate-limit tiers (by account verification level).
///
/// Each API key has a counter starting at 0. Every private call adds
/// [`rest_cost`] of its method; the counter decays continuously by
/// [`RateTier::decay_per_sec`] and never goes below 0. A call that would take
/// it above [`RateTier::max`] is refused with `EAPI:Rate limit exceeded` and
/// adds nothing. Public endpoints are not counted.
///
/// Parses from and serializes as `starter`, `intermediate`, `pro`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateTier {
    /// Max 15, decays 0.33 per second.
    Starter,
    /// Max 20, decays 0.5 per second.
    Intermediate,
    /// Max 20, decays 1 per second.
    Pro,
}

impl RateTier {
    /// Highest value the counter may reach.
    pub fn max(self) -> f64 {
        match self {
            RateTier::Starter => 15.0,
            RateTier::Intermediate | RateTier::Pro => 20.0,
        }
    }

    /// How much the counter decreases per second.
    pub fn decay_per_sec(self) -> f64 {
        match self {
            RateTier::Starter => 0.33,
            RateTier::Intermediate => 0.5,
            RateTier::Pro => 1.0,
        }
    }

    /// `starter`, `intermediate` or `pro`.
    pub fn name(self) -> &'static str {
        match self {
            RateTier::Starter => "starter",
            RateTier::Intermediate => "intermediate",
            RateTier::Pro => "pro",
        }
    }
}

impl fmt::Display for RateTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RateTier {
    type Err = String;

    /// `starter`, `intermediate` or `pro` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starter" => Ok(RateTier::Starter),
            "intermediate" => Ok(RateTier::Intermediate),
            "pro" => Ok(RateTier::Pro),
            _ => Err(format!(
                "unknown rate tier {s:?} (starter, intermediate or pro)"
            )),
        }
    }
}

/// What a private method adds to the REST counter: 2 for ledger and
/// trade-history calls, 0 for the calls that go through the matching
/// engine's own limiter (order placement, amendment and cancellation), 1 for
/// every other private method.
pub fn rest_cost(method: &str) -> u32 {
    match method {
        "Ledgers" | "QueryLedgers" | "TradesHistory" | "QueryTrades" => 2,
        "AddOrder"
        | "AddOrderBatch"
        | "CancelOrder"
        | "CancelOrderBatch"
        | "CancelAll"
        | "CancelAllOrdersAfter"
        | "EditOrder"
        | "AmendOrder" => 0,
        _ => 1,
    }
}

/// One key's REST counter: its value at time `at`; it has decayed since.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RestCounter {
    /// Value at `at`.
    pub value: f64,
    /// Unix time, seconds, of the last update.
    pub at: f64,
}

impl RestCounter {
    /// The value at `now`, after decaying by `decay_per_sec` since `at` (a
    /// `now` before `at` decays nothing).
    pub fn level(&self, now: f64, decay_per_sec: f64) -> f64 {
        let elapsed = (now - self.at).max(0.0);
        (self.value - elapsed * decay_per_sec).max(0.0)
    }
}

// ---------------------------------------------------------------------------
// Pairs and tickers

/// An `AssetPairs` entry, with Kraken's field names. `id` is the map key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// Pair id, the key of the `AssetPairs` result (`XXBTZUSD`).
    #[serde(skip)]
    pub id: String,
    pub altname: String,
    pub wsname: String,
    pub aclass_base: String,
    pub base: String,
    pub aclass_quote: String,
    pub quote: String,
    pub lot: String,
    pub cost_decimals: u32,
    pub pair_decimals: u32,
    pub lot_decimals: u32,
    pub lot_multiplier: u32,
    pub leverage_buy: Vec<u32>,
    pub leverage_sell: Vec<u32>,
    /// Taker fee schedule `[volume, percent]`.
    pub fees: Vec<(u64, f64)>,
    /// Maker fee schedule `[volume, percent]`.
    pub fees_maker: Vec<(u64, f64)>,
    pub fee_volume_currency: String,
    pub margin_call: u32,
    pub margin_stop: u32,
    pub ordermin: String,
    pub costmin: String,
    pub tick_size: String,
    pub status: String,
    pub long_position_limit: u64,
    pub short_position_limit: u64,
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("bad decimal {s:?}"))
}

fn fee_pct(schedule: &[(u64, f64)]) -> Decimal {
    schedule
        .first()
        .map(|(_, pct)| dec(&pct.to_string()))
        .unwrap_or_default()
        / Decimal::ONE_HUNDRED
}

impl Pair {
    /// Minimum base volume.
    pub fn ordermin(&self) -> Decimal {
        dec(&self.ordermin)
    }
    /// Minimum cost in quote.
    pub fn costmin(&self) -> Decimal {
        dec(&self.costmin)
    }
    /// Price increment.
    pub fn tick_size(&self) -> Decimal {
        dec(&self.tick_size)
    }
    /// Taker fee rate of the first tier, as a fraction (0.004 = 0.40 %).
    pub fn taker_fee(&self) -> Decimal {
        fee_pct(&self.fees)
    }
    /// Maker fee rate of the first tier, as a fraction.
    pub fn maker_fee(&self) -> Decimal {
        fee_pct(&self.fees_maker)
    }
    /// Whether `name` designates this pair: id, altname or wsname, or a
    /// `BASE/QUOTE` name using `BTC`/`DOGE` for `XBT`/`XDG`.
    pub fn matches(&self, name: &str) -> bool {
        self.matches_key(&PairKey::new(name))
    }

    fn matches_key(&self, k: &PairKey) -> bool {
        k.name == self.id
            || k.name == self.altname
            || k.name == self.wsname
            || k.wsname.as_deref() == Some(self.wsname.as_str())
    }
}

/// A pair name normalised once for a scan of the whole table: upper case,
/// trimmed, and its `BASE/QUOTE` form with Kraken's `XBT`/`XDG`.
struct PairKey {
    name: String,
    wsname: Option<String>,
}

impl PairKey {
    fn new(name: &str) -> Self {
        let name = name.trim().to_ascii_uppercase();
        let alias = |s: &str| match s {
            "BTC" => "XBT".to_string(),
            "DOGE" => "XDG".to_string(),
            other => other.to_string(),
        };
        let wsname = name
            .split_once('/')
            .map(|(b, q)| format!("{}/{}", alias(b), alias(q)));
        Self { name, wsname }
    }
}

const TAKER_FEES: [(u64, f64); 10] = [
    (0, 0.4),
    (10_000, 0.35),
    (50_000, 0.24),
    (100_000, 0.22),
    (250_000, 0.2),
    (500_000, 0.18),
    (1_000_000, 0.16),
    (2_500_000, 0.14),
    (5_000_000, 0.12),
    (10_000_000, 0.1),
];
const MAKER_FEES: [(u64, f64); 10] = [
    (0, 0.25),
    (10_000, 0.2),
    (50_000, 0.14),
    (100_000, 0.12),
    (250_000, 0.1),
    (500_000, 0.08),
    (1_000_000, 0.06),
    (2_500_000, 0.04),
    (5_000_000, 0.02),
    (10_000_000, 0.0),
];

#[allow(clippy::too_many_arguments)]
fn make_pair(
    id: &str,
    altname: &str,
    wsname: &str,
    base: &str,
    quote: &str,
    pair_decimals: u32,
    ordermin: &str,
    tick_size: &str,
    leverage: &[u32],
    position_limits: (u64, u64),
) -> Pair {
    Pair {
        id: id.into(),
        altname: altname.into(),
        wsname: wsname.into(),
        aclass_base: "currency".into(),
        base: base.into(),
        aclass_quote: "currency".into(),
        quote: quote.into(),
        lot: "unit".into(),
        cost_decimals: 5,
        pair_decimals,
        lot_decimals: 8,
        lot_multiplier: 1,
        leverage_buy: leverage.to_vec(),
        leverage_sell: leverage.to_vec(),
        fees: TAKER_FEES.to_vec(),
        fees_maker: MAKER_FEES.to_vec(),
        fee_volume_currency: "ZUSD".into(),
        margin_call: 80,
        margin_stop: 40,
        ordermin: ordermin.into(),
        costmin: "0.5".into(),
        tick_size: tick_size.into(),
        status: "online".into(),
        long_position_limit: position_limits.0,
        short_position_limit: position_limits.1,
    }
}

/// The simulator's pair table (the small one; see [`realistic_pairs`] for
/// one of Kraken's size).
pub fn default_pairs() -> Vec<Pair> {
    vec![
        make_pair(
            "XXBTZUSD",
            "XBTUSD",
            "XBT/USD",
            "XXBT",
            "ZUSD",
            1,
            "0.00005",
            "0.1",
            &[2, 3, 4, 5],
            (270, 180),
        ),
        make_pair(
            "XETHZUSD",
            "ETHUSD",
            "ETH/USD",
            "XETH",
            "ZUSD",
            2,
            "0.002",
            "0.01",
            &[2, 3, 4, 5],
            (2700, 1800),
        ),
        make_pair(
            "XBTUSDT",
            "XBTUSDT",
            "XBT/USDT",
            "XXBT",
            "USDT",
            1,
            "0.00005",
            "0.1",
            &[2, 3],
            (50, 30),
        ),
        make_pair(
            "SOLUSD",
            "SOLUSD",
            "SOL/USD",
            "SOL",
            "ZUSD",
            2,
            "0.02",
            "0.01",
            &[2, 3, 4],
            (25000, 15000),
        ),
        make_pair(
            "XDGUSD",
            "XDGUSD",
            "XDG/USD",
            "XXDG",
            "ZUSD",
            7,
            "20",
            "0.0000001",
            &[2, 3],
            (25_000_000, 15_000_000),
        ),
        make_pair(
            "ADAEUR",
            "ADAEUR",
            "ADA/EUR",
            "ADA",
            "ZEUR",
            6,
            "5",
            "0.000001",
            &[2, 3],
            (1_000_000, 600_000),
        ),
    ]
}

/// Last trade prices of the default tickers, by pair id.
pub fn default_last_prices() -> BTreeMap<String, Decimal> {
    [
        ("XXBTZUSD", "67000.0"),
        ("XETHZUSD", "3500.00"),
        ("XBTUSDT", "67010.0"),
        ("SOLUSD", "150.00"),
        ("XDGUSD", "0.1500000"),
        ("ADAEUR", "0.400000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), dec(v)))
    .collect()
}

/// Kraken's display decimals of an asset in `Balance`.
pub fn asset_decimals(asset: &str) -> u32 {
    match asset {
        "ZUSD" | "ZEUR" | "ZGBP" | "ZCAD" => 4,
        "USDT" | "USDC" | "XXDG" | "ADA" => 8,
        _ => 10,
    }
}

/// Formats `d` with exactly `dp` decimals, rounding half away from zero.
pub fn fixed(d: Decimal, dp: u32) -> String {
    let r = d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    format!("{:.*}", dp as usize, r)
}

/// Parses a plain decimal: digits with at most one `.`, no sign, no exponent.
pub fn plain_decimal(s: &str) -> Option<Decimal> {
    let mut dots = 0;
    let mut digits = 0;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return None,
        }
    }
    if digits == 0 || dots > 1 {
        return None;
    }
    Decimal::from_str(s).ok()
}

/// Number of significant decimals of a value (`1.2500` has 2).
fn decimals(d: Decimal) -> u32 {
    d.normalize().scale()
}

mod realistic;
pub use realistic::{realistic_market, realistic_pairs, KRAKEN_PAIR_COUNT};

/// The body of the simulator's `AssetPairs` answer (every pair) with the
/// table of [`realistic_market`]`(n)`: exactly what `GET
/// /0/public/AssetPairs` serves with that table, e.g. to save as a fixture.
pub fn realistic_asset_pairs_body(n: usize) -> String {
    let mut ex = Exchange::new(&[]).expect("no accounts to decode");
    ex.use_realistic_pairs(n);
    ex.public("GET", "/0/public/AssetPairs", 0.0).body
}

// ---------------------------------------------------------------------------
// Orders

/// Lifecycle state of an order, with Kraken's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Open,
    Closed,
    Canceled,
    Expired,
}

/// An order booked by `AddOrder`, with the exact parameters that reached the
/// exchange and its current state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BookedOrder {
    /// Kraken txid, `XXXXXX-XXXXX-XXXXXX`.
    pub txid: String,
    /// The first key of the account that placed it, whichever of the
    /// account's keys sent the `AddOrder`.
    pub api_key: String,
    /// All `AddOrder` parameters as received (including `nonce`).
    pub params: Params,
    /// Pair id (`XXBTZUSD`).
    pub pair: String,
    /// Pair altname (`XBTUSD`).
    pub altname: String,
    /// `buy` or `sell`.
    pub side: String,
    pub ordertype: String,
    pub status: OrderStatus,
    /// Requested volume (quote units with `viqc`).
    pub vol: Decimal,
    /// Base volume the order trades.
    pub base_vol: Decimal,
    pub vol_exec: Decimal,
    pub cost: Decimal,
    pub fee: Decimal,
    /// Average execution price.
    pub avg_price: Decimal,
    /// Price the order executes at in the simulator (limit price, trigger,
    /// or last price for market and trailing orders).
    pub effective_price: Decimal,
    /// `descr.price` / `descr.price2` as Kraken prints them.
    pub descr_price: String,
    pub descr_price2: String,
    /// `descr.leverage` (`none` or `N:1`).
    pub leverage: String,
    pub userref: Option<i64>,
    pub cl_ord_id: Option<String>,
    pub oflags: String,
    pub timeinforce: String,
    pub opentm: f64,
    pub closetm: f64,
    pub starttm: f64,
    pub expiretm: f64,
    pub descr_order: String,
    pub descr_close: String,
    pub reason: Option<String>,
    /// Asset and amount held while the order is open.
    pub hold_asset: String,
    pub hold: Decimal,
}

impl BookedOrder {
    /// Open or pending (counts for `cl_ord_id` uniqueness and holds).
    pub fn is_open(&self) -> bool {
        matches!(self.status, OrderStatus::Open | OrderStatus::Pending)
    }
}

#[derive(Clone, Debug)]
struct PriceSpec {
    raw: String,
    prefix: Option<char>,
    percent: bool,
    amount: Decimal,
}

impl PriceSpec {
    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let (prefix, rest) = match raw.chars().next()? {
            c @ ('+' | '-' | '#') => (Some(c), &raw[1..]),
            _ => (None, raw),
        };
        let (percent, num) = match rest.strip_suffix('%') {
            Some(n) => (true, n),
            None => (false, rest),
        };
        if percent && prefix.is_none() {
            return None;
        }
        let amount = plain_decimal(num)?;
        if prefix.is_none() && amount.is_zero() {
            return None;
        }
        Some(Self {
            raw: raw.to_string(),
            prefix,
            percent,
            amount,
        })
    }

    fn is_relative(&self) -> bool {
        self.prefix.is_some()
    }

    fn effective(&self, last: Decimal, side: &str) -> Decimal {
        let Some(p) = self.prefix else {
            return self.amount;
        };
        let delta = if self.percent {
            last * self.amount / Decimal::ONE_HUNDRED
        } else {
            self.amount
        };
        match (p, side) {
            ('+', _) | ('#', "sell") => last + delta,
            _ => last - delta,
        }
    }

    fn display(&self, pair_decimals: u32) -> String {
        if self.is_relative() {
            self.raw.clone()
        } else {
            fixed(self.amount, pair_decimals)
        }
    }
}

fn needs_price(ordertype: &str) -> bool {
    !matches!(ordertype, "market" | "settle-position")
}

fn needs_price2(ordertype: &str) -> bool {
    ordertype.ends_with("-limit")
}

fn is_trailing(ordertype: &str) -> bool {
    ordertype.starts_with("trailing-stop")
}

fn order_phrase(ordertype: &str, price: &str, price2: &str) -> String {
    match ordertype {
        "market" => "market".into(),
        "settle-position" => "settle position".into(),
        "limit" => format!("limit {price}"),
        "iceberg" => format!("iceberg {price}"),
        "stop-loss" => format!("stop loss {price}"),
        "take-profit" => format!("take profit {price}"),
        "stop-loss-limit" => format!("stop loss {price} -> limit {price2}"),
        "take-profit-limit" => format!("take profit {price} -> limit {price2}"),
        "trailing-stop" => format!("trailing stop {price}"),
        "trailing-stop-limit" => format!("trailing stop {price} -> limit {price2}"),
        other => other.to_string(),
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Kraken's accepted `cl_ord_id` forms: long UUID, short UUID (32 hex digits)
/// or free-format printable ASCII up to 18 characters.
pub fn valid_cl_ord_id(s: &str) -> bool {
    let long_uuid = s.len() == 36
        && s.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && is_hex(&s.replace('-', ""));
    let short_uuid = s.len() == 32 && is_hex(s);
    let free = !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| (0x21..0x7f).contains(&b));
    long_uuid || short_uuid || free
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `starttm` / `expiretm`: `0`, a Unix time, or `+<seconds>` from now.
fn parse_tm(s: &str, now: f64) -> Option<f64> {
    let s = s.trim();
    if let Some(rel) = s.strip_prefix('+') {
        return plain_decimal(rel).map(|d| now + d.to_string().parse::<f64>().unwrap_or(0.0));
    }
    plain_decimal(s).and_then(|d| d.to_string().parse().ok())
}

fn round_tm(t: f64) -> f64 {
    (t * 10_000.0).round() / 10_000.0
}

// ---------------------------------------------------------------------------
// Faults

/// What a fault does to the request it applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum FaultKind {
    /// Waits `ms`, then handles the request normally (the request reaches the
    /// exchange late even if the client gave up).
    Delay { ms: u64 },
    /// Answers this HTTP status and body without processing (nonce not
    /// consumed).
    HttpStatus {
        status: u16,
        #[serde(default)]
        body: String,
    },
    /// Authenticates (consuming the nonce), then answers `error` without
    /// processing.
    KrakenError { error: String },
    /// Closes the connection without processing or answering (nonce not
    /// consumed).
    DropBeforeBook,
    /// Processes normally (books an order), then closes the connection
    /// without answering.
    DropAfterBook,
    /// Processes normally, then answers `error` instead of the result.
    ErrorAfterBook { error: String },
    /// Processes normally, then waits `ms` before answering.
    DelayAfterBook { ms: u64 },
    /// Authenticates (consuming the nonce), processes nothing, closes the
    /// connection without answering.
    ConsumeNonceNoAnswer,
    /// Authenticates without consuming the nonce and answers
    /// `EAPI:Rate limit exceeded` as the REST counter does, whether or not a
    /// rate tier is set; adds nothing to the counter.
    RateLimit,
}

/// A queued fault: applies to the next private request of `method` (any
/// private request when `method` is `None`), then is spent.
///
/// JSON: `{"method":"AddOrder","kind":"DelayAfterBook","ms":3000}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(flatten)]
    pub kind: FaultKind,
}

impl Fault {
    /// A fault for the next request of one method (`AddOrder`, …).
    pub fn on(method: &str, kind: FaultKind) -> Self {
        Self {
            method: Some(method.to_string()),
            kind,
        }
    }

    /// A fault for the next private request, whatever its method.
    pub fn any(kind: FaultKind) -> Self {
        Self { method: None, kind }
    }
}

// ---------------------------------------------------------------------------
// Requests and replies

/// One request as received, for [`Exchange::private`].
#[derive(Clone, Copy, Debug)]
pub struct PrivateRequest<'a> {
    /// HTTP method (`POST`).
    pub http_method: &'a str,
    /// Path with query string, as signed (`/0/private/AddOrder`).
    pub path: &'a str,
    /// `API-Key` header.
    pub api_key: Option<&'a str>,
    /// `API-Sign` header.
    pub api_sign: Option<&'a str>,
    /// `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// `Content-Length` header, if present and a number.
    pub content_length: Option<u64>,
    /// Whether the body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Raw body bytes.
    pub body: &'a [u8],
}

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// `200 {"error":[],"result":result}`.
    pub fn ok(result: Value) -> Self {
        Self::json(200, &json!({ "error": [], "result": result }))
    }

    /// `200 {"error":[],"result":result}` from a result already serialised
    /// as JSON.
    pub fn ok_raw(result: &str) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: format!(r#"{{"error":[],"result":{result}}}"#),
        }
    }

    /// `200 {"error":[error]}` (Kraken answers API errors with HTTP 200).
    pub fn error(error: &str) -> Self {
        Self::json(200, &json!({ "error": [error] }))
    }

    /// `200 {"error":["EAPI:Rate limit exceeded"],"result":{}}`, Kraken's
    /// exact refusal by the REST counter.
    pub fn rate_limited() -> Self {
        Self::json(200, &json!({ "error": [e::RATE_LIMIT], "result": {} }))
    }

    /// Any JSON value.
    pub fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string(),
        }
    }

    /// Plain text.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }

    /// The body as JSON, if it is.
    pub fn value(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The Kraken `error` array (empty if none or not JSON).
    pub fn errors(&self) -> Vec<String> {
        self.value()
            .and_then(|v| v.get("error").cloned())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// The Kraken `result`, if any.
    pub fn result(&self) -> Option<Value> {
        self.value().and_then(|v| v.get("result").cloned())
    }
}

/// What the front must do with the connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Send this reply.
    Reply(Reply),
    /// Close the connection without answering.
    Drop,
}

/// Result of a private request.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub answer: Answer,
    /// Wait this long before answering (or dropping).
    pub delay_after_ms: u64,
}

impl Outcome {
    fn now(answer: Answer) -> Self {
        Self {
            answer,
            delay_after_ms: 0,
        }
    }

    /// The reply, unless the connection is dropped.
    pub fn reply(&self) -> Option<&Reply> {
        match &self.answer {
            Answer::Reply(r) => Some(r),
            Answer::Drop => None,
        }
    }
}

/// One entry of the request log. Never contains the `API-Sign` value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// 1-based order of arrival.
    pub seq: u64,
    /// Unix time of handling, seconds.
    pub time: f64,
    pub http_method: String,
    /// Path with query string.
    pub path: String,
    /// `private`, `public` or `other`.
    pub scope: String,
    /// Kraken method from the path (`AddOrder`).
    pub method: Option<String>,
    /// `API-Key` header.
    pub api_key: Option<String>,
    /// Parsed parameters (body for private calls, query for public ones).
    pub params: Params,
    /// Whether `API-Sign` (and `otp`) verified; `None` if not checked.
    pub signature_valid: Option<bool>,
    /// Errors answered (empty on success).
    pub errors: Vec<String>,
    /// Txids booked by this request.
    pub booked: Vec<String>,
    /// Fault applied, if any.
    pub fault: Option<FaultKind>,
    /// HTTP status answered; `None` when the connection was dropped.
    pub status: Option<u16>,
    /// Delay before the answer (fault `DelayAfterBook`).
    pub answer_delay_ms: u64,
    /// `Content-Length` header of the request, if present and a number.
    #[serde(default)]
    pub content_length: Option<u64>,
    /// Whether the request body was sent with `Transfer-Encoding: chunked`.
    #[serde(default)]
    pub chunked: bool,
    /// The key's REST counter after this call (unchanged if the call was
    /// refused or costs nothing); `None` when no rate tier is set or the call
    /// did not pass authentication.
    #[serde(default)]
    pub rest_counter: Option<f64>,
}

impl RequestRecord {
    fn new(seq: u64, now: f64, http_method: &str, path: &str, scope: &str) -> Self {
        Self {
            seq,
            time: now,
            http_method: http_method.to_string(),
            path: path.to_string(),
            scope: scope.to_string(),
            method: None,
            api_key: None,
            params: Params::new(),
            signature_valid: None,
            errors: Vec::new(),
            booked: Vec::new(),
            fault: None,
            status: None,
            answer_delay_ms: 0,
            content_length: None,
            chunked: false,
            rest_counter: None,
        }
    }
}

/// A Kraken-style id, `PXXXXX-XXXXX-XXXXXX` with prefix `P`, derived from
/// `seed`.
fn kraken_id(prefix: char, seed: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(seed);
    let mut chars: Vec<char> = digest
        .iter()
        .take(16)
        .map(|b| ALPHABET[(*b % 32) as usize] as char)
        .collect();
    chars.insert(0, prefix);
    let s: String = chars.into_iter().collect();
    format!("{}-{}-{}", &s[..6], &s[6..11], &s[11..17])
}

/// `(method, query)` of `/0/<scope>/<Method>?query`.
pub fn split_method<'a>(path: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = path.strip_prefix(prefix)?;
    Some(rest.split_once('?').unwrap_or((rest, "")))
}

// ---------------------------------------------------------------------------
// Exchange

/// The whole simulated exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Accounts by API key.
    pub accounts: BTreeMap<String, AccountState>,
    /// Pair table, in `AssetPairs` order.
    pub pairs: Vec<Pair>,
    /// Last trade price by pair id.
    pub last_prices: BTreeMap<String, Decimal>,
    /// `SystemStatus.status`: `online`, `maintenance`, `cancel_only`,
    /// `post_only`.
    pub system_status: String,
    /// Whether `validate=true` also checks funds (default true).
    pub validate_checks_funds: bool,
    /// Every booked order, oldest first.
    pub orders: Vec<BookedOrder>,
    /// Pending faults, applied in order.
    pub faults: VecDeque<Fault>,
    /// Request log, oldest first.
    pub requests: Vec<RequestRecord>,
    txid_counter: u64,
    request_seq: u64,
    rate_tier: Option<RateTier>,
    rate_limited: u64,
}

type Res = Result<Value, String>;

impl Exchange {
    /// A fresh exchange with the default pairs and tickers.
    pub fn new(accounts: &[Account]) -> anyhow::Result<Self> {
        let mut map = BTreeMap::new();
        for a in accounts {
            let keys = std::iter::once((&a.api_key, &a.api_secret))
                .chain(a.more_keys.iter().map(|(k, s)| (k, s)));
            for (i, (api_key, api_secret)) in keys.enumerate() {
                let secret = sign::decode_secret(api_secret).map_err(|err| {
                    anyhow::anyhow!("API secret of {api_key:?} is not base64: {err}")
                })?;
                let state = AccountState {
                    api_key: api_key.clone(),
                    owner: a.api_key.clone(),
                    secret,
                    otp: a.otp.clone(),
                    last_nonce: 0,
                    // Kept under the first key only.
                    balances: if i == 0 {
                        a.balances.clone()
                    } else {
                        BTreeMap::new()
                    },
                    rest: RestCounter::default(),
                    permissions: a.permissions.clone(),
                };
                if map.insert(api_key.clone(), state).is_some() {
                    anyhow::bail!("API key {api_key:?} is configured twice");
                }
            }
        }
        Ok(Self {
            accounts: map,
            pairs: default_pairs(),
            last_prices: default_last_prices(),
            system_status: "online".into(),
            validate_checks_funds: true,
            orders: Vec::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            txid_counter: 0,
            request_seq: 0,
            rate_tier: None,
            rate_limited: 0,
        })
    }

    /// Turns the REST rate counter on with a tier's limits, or off (`None`,
    /// the default: no call is ever refused by it). Every key's counter
    /// restarts at 0.
    pub fn set_rate_tier(&mut self, tier: Option<RateTier>) {
        self.rate_tier = tier;
        for a in self.accounts.values_mut() {
            a.rest = RestCounter::default();
        }
    }

    /// The tier in force, if any.
    pub fn rate_tier(&self) -> Option<RateTier> {
        self.rate_tier
    }

    /// A key's REST counter at `now` (0 for an unknown key or with no tier).
    pub fn rest_counter(&self, api_key: &str, now: f64) -> f64 {
        match (self.rate_tier, self.accounts.get(api_key)) {
            (Some(tier), Some(a)) => a.rest.level(now, tier.decay_per_sec()),
            _ => 0.0,
        }
    }

    /// How many calls the REST counter refused (injected
    /// [`FaultKind::RateLimit`] refusals are not counted).
    pub fn rate_limited_count(&self) -> u64 {
        self.rate_limited
    }

    /// Replaces the pair table and the last prices with
    /// [`realistic_market`]`(n)`: the default pairs and prices, unchanged,
    /// plus synthetic pairs up to `n` in all.
    pub fn use_realistic_pairs(&mut self, n: usize) {
        let (pairs, prices) = realistic_market(n);
        self.pairs = pairs;
        self.last_prices = prices;
    }

    /// The pair `name` designates (id, altname, wsname).
    pub fn find_pair(&self, name: &str) -> Option<&Pair> {
        let key = PairKey::new(name);
        self.pairs.iter().find(|p| p.matches_key(&key))
    }

    /// Sets a pair's `status`; false if the pair is unknown.
    pub fn set_pair_status(&mut self, pair: &str, status: &str) -> bool {
        let key = PairKey::new(pair);
        match self.pairs.iter_mut().find(|p| p.matches_key(&key)) {
            Some(p) => {
                p.status = status.to_string();
                true
            }
            None => false,
        }
    }

    /// Sets a pair's last trade price; false if the pair is unknown or the
    /// price not positive.
    pub fn set_last_price(&mut self, pair: &str, price: Decimal) -> bool {
        if price <= Decimal::ZERO {
            return false;
        }
        match self.find_pair(pair).map(|p| p.id.clone()) {
            Some(id) => {
                self.last_prices.insert(id, price);
                true
            }
            None => false,
        }
    }

    /// Last trade price of a pair.
    pub fn last_price(&self, pair: &str) -> Option<Decimal> {
        let id = &self.find_pair(pair)?.id;
        self.last_prices.get(id).copied()
    }

    /// The first key of the account `api_key` belongs to (`api_key` itself
    /// when it is unknown): where the account's orders and balances are kept.
    pub fn owner<'a>(&'a self, api_key: &'a str) -> &'a str {
        self.accounts
            .get(api_key)
            .map_or(api_key, |a| a.owner.as_str())
    }

    /// Sets an account's balance of an asset; false if the key is unknown.
    pub fn set_balance(&mut self, api_key: &str, asset: &str, value: Decimal) -> bool {
        let owner = self.owner(api_key).to_string();
        match self.accounts.get_mut(&owner) {
            Some(a) => {
                a.balances.insert(asset.to_string(), value);
                true
            }
            None => false,
        }
    }

    /// Sets what an account's key may do; false if the key is unknown.
    pub fn set_permissions(&mut self, api_key: &str, permissions: BTreeSet<Permission>) -> bool {
        match self.accounts.get_mut(api_key) {
            Some(a) => {
                a.permissions = permissions;
                true
            }
            None => false,
        }
    }

    /// What an account's key may do (`None` for an unknown key).
    pub fn permissions(&self, api_key: &str) -> Option<&BTreeSet<Permission>> {
        self.accounts.get(api_key).map(|a| &a.permissions)
    }

    /// An account's balances as `BalanceEx` shows them, per asset
    /// `{"balance": …, "hold_trade": …}` (`None` for an unknown key).
    pub fn balances_json(&self, api_key: &str) -> Option<Value> {
        self.accounts
            .contains_key(api_key)
            .then(|| self.balance_ex_json(self.owner(api_key)))
    }

    /// An account's balance of an asset (including held funds).
    pub fn balance(&self, api_key: &str, asset: &str) -> Decimal {
        self.accounts
            .get(self.owner(api_key))
            .and_then(|a| a.balances.get(asset).copied())
            .unwrap_or_default()
    }

    /// Funds of an asset held by the account's open orders.
    pub fn held(&self, api_key: &str, asset: &str) -> Decimal {
        self.orders
            .iter()
            .filter(|o| o.api_key == self.owner(api_key) && o.is_open() && o.hold_asset == asset)
            .map(|o| o.hold)
            .sum()
    }

    /// Balance minus holds.
    pub fn free(&self, api_key: &str, asset: &str) -> Decimal {
        self.balance(api_key, asset) - self.held(api_key, asset)
    }

    /// The booked order with this txid.
    pub fn order(&self, txid: &str) -> Option<&BookedOrder> {
        self.orders.iter().find(|o| o.txid == txid)
    }

    /// Queues a fault.
    pub fn push_fault(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    /// Removes and returns the first queued fault that applies to `method`.
    pub fn take_fault(&mut self, method: &str) -> Option<FaultKind> {
        let i = self
            .faults
            .iter()
            .position(|f| f.method.as_deref().is_none_or(|m| m == method))?;
        self.faults.remove(i).map(|f| f.kind)
    }

    fn next_seq(&mut self) -> u64 {
        self.request_seq += 1;
        self.request_seq
    }

    fn next_txid(&mut self) -> String {
        loop {
            self.txid_counter += 1;
            let txid = kraken_id('O', &format!("kraken-sim order {}", self.txid_counter));
            if self.order(&txid).is_none() {
                return txid;
            }
        }
    }

    /// Logs a request that is neither public nor private (unknown path).
    pub fn record_other(&mut self, http_method: &str, path: &str, status: u16, now: f64) {
        let mut rec = RequestRecord::new(self.next_seq(), now, http_method, path, "other");
        rec.status = Some(status);
        self.requests.push(rec);
    }

    // -- private ------------------------------------------------------------

    /// Takes the fault for the request's method and handles it. `Delay`
    /// faults are not waited for here (the HTTP front waits before calling
    /// [`Exchange::private`]).
    pub fn handle_private(&mut self, req: &PrivateRequest<'_>, now: f64) -> Outcome {
        let method = split_method(req.path, "/0/private/").map_or("", |(m, _)| m);
        let fault = self.take_fault(method);
        self.private(req, now, fault)
    }

    /// Handles a private request with the fault already taken from the queue.
    pub fn private(
        &mut self,
        req: &PrivateRequest<'_>,
        now: f64,
        fault: Option<FaultKind>,
    ) -> Outcome {
        let method = split_method(req.path, "/0/private/").map_or("", |(m, _)| m);
        let params = parse_body(req.content_type, req.body).unwrap_or_default();
        let mut rec =
            RequestRecord::new(self.next_seq(), now, req.http_method, req.path, "private");
        rec.method = Some(method.to_string());
        rec.api_key = req.api_key.map(str::to_string);
        rec.params = params.clone();
        rec.fault = fault.clone();
        rec.content_length = req.content_length;
        rec.chunked = req.chunked;

        let outcome = match &fault {
            Some(FaultKind::HttpStatus { status, body }) => {
                Outcome::now(Answer::Reply(Reply::text(*status, body)))
            }
            Some(FaultKind::DropBeforeBook) => Outcome::now(Answer::Drop),
            _ => {
                let answer =
                    self.authenticated(req, method, &params, now, fault.as_ref(), &mut rec);
                match &fault {
                    Some(FaultKind::DropAfterBook) => Outcome::now(Answer::Drop),
                    Some(FaultKind::ErrorAfterBook { error }) => {
                        rec.errors = vec![error.clone()];
                        Outcome::now(Answer::Reply(Reply::error(error)))
                    }
                    Some(FaultKind::DelayAfterBook { ms }) => Outcome {
                        answer,
                        delay_after_ms: *ms,
                    },
                    _ => Outcome::now(answer),
                }
            }
        };
        rec.status = outcome.reply().map(|r| r.status);
        rec.answer_delay_ms = outcome.delay_after_ms;
        self.requests.push(rec);
        outcome
    }

    fn authenticated(
        &mut self,
        req: &PrivateRequest<'_>,
        method: &str,
        params: &Params,
        now: f64,
        fault: Option<&FaultKind>,
        rec: &mut RequestRecord,
    ) -> Answer {
        let fail = |rec: &mut RequestRecord, err: &str| {
            rec.errors = vec![err.to_string()];
            Answer::Reply(Reply::error(err))
        };
        if req.http_method != "POST" || !PRIVATE_METHODS.contains(&method) {
            return fail(rec, e::UNKNOWN_METHOD);
        }
        let Some(account) = req.api_key.and_then(|k| self.accounts.get_mut(k.trim())) else {
            return fail(rec, e::INVALID_KEY);
        };
        let nonce_text = params.get("nonce").map_or("", String::as_str);
        let sig_ok = req
            .api_sign
            .is_some_and(|s| sign::verify(&account.secret, req.path, nonce_text, req.body, s));
        rec.signature_valid = Some(sig_ok);
        let otp_ok = account
            .otp
            .as_ref()
            .is_none_or(|otp| params.get("otp") == Some(otp));
        if !sig_ok || !otp_ok {
            return fail(rec, e::INVALID_SIGNATURE);
        }
        let nonce = Some(nonce_text)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|n| *n > account.last_nonce);
        let Some(nonce) = nonce else {
            return fail(rec, e::INVALID_NONCE);
        };
        // The REST counter is applied here, once the key, signature, `otp`
        // and nonce have all passed (Kraken checks the key and signature
        // before anything else): a request that fails authentication, a
        // replay included, is neither charged nor refused by the counter. A
        // refusal, like the injected `RateLimit` fault at the same spot, does
        // not consume the nonce and adds nothing to the counter.
        let rate_limited = |rec: &mut RequestRecord| {
            rec.errors = vec![e::RATE_LIMIT.to_string()];
            Answer::Reply(Reply::rate_limited())
        };
        if fault == Some(&FaultKind::RateLimit) {
            return rate_limited(rec);
        }
        if let Some(tier) = self.rate_tier {
            let level = account.rest.level(now, tier.decay_per_sec());
            let cost = f64::from(rest_cost(method));
            if cost > 0.0 && level + cost > tier.max() + RATE_EPSILON {
                rec.rest_counter = Some(level);
                self.rate_limited += 1;
                return rate_limited(rec);
            }
            account.rest = RestCounter {
                value: level + cost,
                at: now.max(account.rest.at),
            };
            rec.rest_counter = Some(level + cost);
        }
        account.last_nonce = nonce;
        // Orders and balances are the account's, whichever key asks.
        let key = account.owner.clone();
        let needed = Permission::for_method(method);
        let permitted = needed.is_empty() || needed.iter().any(|p| account.permissions.contains(p));
        match fault {
            Some(FaultKind::KrakenError { error }) => return fail(rec, error),
            Some(FaultKind::ConsumeNonceNoAnswer) => return Answer::Drop,
            _ => {}
        }
        // A key lacking the method's permission: authenticated (its nonce
        // is spent, its REST counter charged) but refused before anything
        // is looked at, `validate=true` orders included.
        if !permitted {
            return fail(rec, e::PERMISSION_DENIED);
        }
        self.expire_orders(now);
        let result = match method {
            "AddOrder" => self.add_order(&key, params, now, rec),
            "Balance" => Ok(self.balance_json(&key)),
            "BalanceEx" => Ok(self.balance_ex_json(&key)),
            "OpenOrders" => self.open_orders(&key, params),
            "ClosedOrders" => self.closed_orders(&key, params),
            "QueryOrders" => self.query_orders(&key, params),
            "TradesHistory" => self.trades_history(&key, params),
            "CancelOrder" => self.cancel_order(&key, params, now),
            "CancelAll" => Ok(self.cancel_all(&key, now)),
            _ => Err(e::UNKNOWN_METHOD.to_string()),
        };
        match result {
            Ok(v) => Answer::Reply(Reply::ok(v)),
            Err(err) => fail(rec, &err),
        }
    }

    /// Marks open orders whose `expiretm` has passed as expired.
    pub fn expire_orders(&mut self, now: f64) {
        for o in &mut self.orders {
            if o.is_open() && o.expiretm > 0.0 && now >= o.expiretm {
                o.status = OrderStatus::Expired;
                o.closetm = o.expiretm;
                o.hold = Decimal::ZERO;
            }
        }
    }

    fn market_status_check(
        &self,
        pair: &Pair,
        ordertype: &str,
        params: &Params,
    ) -> Result<(), String> {
        let post = params
            .get("oflags")
            .is_some_and(|f| f.split(',').any(|x| x.trim() == "post"));
        let reduce = params.get("reduce_only").is_some_and(|v| v == "true");
        let allowed = |status: &str| match status {
            "online" => true,
            "post_only" => ordertype == "limit" && post,
            "limit_only" => ordertype == "limit",
            "reduce_only" => reduce,
            _ => false,
        };
        match self.system_status.as_str() {
            "maintenance" => return Err(e::UNAVAILABLE.into()),
            s if !allowed(s) => return Err(e::market_mode(s)),
            _ => {}
        }
        if !allowed(&pair.status) {
            return Err(e::market_mode(&pair.status));
        }
        Ok(())
    }

    fn add_order(&mut self, key: &str, p: &Params, now: f64, rec: &mut RequestRecord) -> Res {
        let invalid = |name: &str| e::invalid_arguments(name);
        for name in ["pair", "type", "ordertype", "volume"] {
            if p.get(name).is_none_or(|v| v.trim().is_empty()) {
                return Err(invalid(name));
            }
        }
        let pair = self.find_pair(&p["pair"]).ok_or(e::UNKNOWN_PAIR)?.clone();
        let side = p["type"].as_str();
        let ordertype = p["ordertype"].as_str();
        self.market_status_check(&pair, ordertype, p)?;
        if side != "buy" && side != "sell" {
            return Err(invalid("type"));
        }
        if !ORDER_TYPES.contains(&ordertype) {
            return Err(invalid("ordertype"));
        }
        let vol = plain_decimal(p["volume"].trim())
            .filter(|v| *v > Decimal::ZERO && decimals(*v) <= pair.lot_decimals)
            .ok_or_else(|| invalid("volume"))?;
        if ordertype == "settle-position" {
            return Err(e::UNKNOWN_POSITION.into());
        }

        // Prices.
        let price = if needs_price(ordertype) {
            let spec = p
                .get("price")
                .and_then(|s| PriceSpec::parse(s))
                .ok_or_else(|| invalid("price"))?;
            if is_trailing(ordertype) && spec.prefix != Some('+') {
                return Err(invalid("price"));
            }
            Some(spec)
        } else {
            None
        };
        let price2 = if needs_price2(ordertype) {
            let spec = p
                .get("price2")
                .and_then(|s| PriceSpec::parse(s))
                .ok_or_else(|| invalid("price2"))?;
            if ordertype == "trailing-stop-limit" && !matches!(spec.prefix, Some('+' | '-')) {
                return Err(invalid("price2"));
            }
            Some(spec)
        } else {
            None
        };

        // Other arguments.
        let userref = match p.get("userref") {
            Some(u) => Some(u.trim().parse::<i32>().map_err(|_| invalid("userref"))?),
            None => None,
        };
        let cl_ord_id = match p.get("cl_ord_id") {
            Some(c) if !valid_cl_ord_id(c) => return Err(invalid("cl_ord_id")),
            // The spec makes `userref` and `cl_ord_id` mutually exclusive.
            Some(_) if userref.is_some() => return Err(invalid("cl_ord_id")),
            Some(c) => Some(c.clone()),
            None => None,
        };
        let oflags: Vec<&str> = p
            .get("oflags")
            .map(|f| {
                f.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if oflags.iter().any(|f| !OFLAGS.contains(f))
            || (oflags.contains(&"fcib") && oflags.contains(&"fciq"))
        {
            return Err(invalid("oflags"));
        }
        let viqc = oflags.contains(&"viqc");
        if viqc && !(side == "buy" && ordertype == "market") {
            return Err(invalid("oflags"));
        }
        let timeinforce = p.get("timeinforce").map_or("GTC", String::as_str);
        if !["GTC", "IOC", "GTD"].contains(&timeinforce) {
            return Err(invalid("timeinforce"));
        }
        let starttm = match p.get("starttm") {
            Some(s) => parse_tm(s, now).ok_or_else(|| invalid("starttm"))?,
            None => 0.0,
        };
        let expiretm = match p.get("expiretm") {
            Some(s) => parse_tm(s, now).ok_or_else(|| invalid("expiretm"))?,
            None => 0.0,
        };
        let validate = match p.get("validate") {
            Some(v) => parse_bool(v).ok_or_else(|| invalid("validate"))?,
            None => false,
        };
        let deadline = match p.get("deadline") {
            Some(d) => {
                let t = time::parse_rfc3339(d).ok_or_else(|| invalid("deadline"))?;
                if t > now + 60.0 {
                    return Err(invalid("deadline"));
                }
                Some(t)
            }
            None => None,
        };
        if p.get("trigger")
            .is_some_and(|t| t != "index" && t != "last")
        {
            return Err(invalid("trigger"));
        }
        if p.get("reduce_only")
            .is_some_and(|v| parse_bool(v).is_none())
        {
            return Err(invalid("reduce_only"));
        }
        if p.get("stptype").is_some_and(|v| {
            !["cancel-newest", "cancel-oldest", "cancel-both"].contains(&v.as_str())
        }) {
            return Err(invalid("stptype"));
        }
        if p.get("displayvol")
            .is_some_and(|v| plain_decimal(v).is_none())
        {
            return Err(invalid("displayvol"));
        }
        let leverage = match p.get("leverage").map(|l| l.trim()) {
            None | Some("none") => "none".to_string(),
            Some(l) => {
                let n = l
                    .split_once(':')
                    .map_or(l, |(n, _)| n)
                    .parse::<u32>()
                    .map_err(|_| invalid("leverage"))?;
                format!("{n}:1")
            }
        };
        let close = match p.get("close[ordertype]") {
            Some(ct) => {
                if !ORDER_TYPES.contains(&ct.as_str()) || ct == "settle-position" {
                    return Err(invalid("close[ordertype]"));
                }
                let cp = if needs_price(ct) {
                    let s = p.get("close[price]").and_then(|s| PriceSpec::parse(s));
                    Some(s.ok_or_else(|| invalid("close[price]"))?)
                } else {
                    None
                };
                let cp2 = if needs_price2(ct) {
                    let s = p.get("close[price2]").and_then(|s| PriceSpec::parse(s));
                    Some(s.ok_or_else(|| invalid("close[price2]"))?)
                } else {
                    None
                };
                Some((ct.clone(), cp, cp2))
            }
            None => None,
        };

        // Price precision and tick size (absolute prices only).
        let absolute: Vec<&PriceSpec> = [&price, &price2]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_relative())
            .collect();
        for spec in &absolute {
            if decimals(spec.amount) > pair.pair_decimals {
                return Err(e::invalid_price_decimals(&pair.altname, pair.pair_decimals));
            }
        }
        let tick = pair.tick_size();
        for spec in &absolute {
            if !tick.is_zero() && !(spec.amount % tick).is_zero() {
                return Err(e::TICK_SIZE.into());
            }
        }

        // Minimums.
        let last = self.last_prices.get(&pair.id).copied().unwrap_or_default();
        let ref_price = match &price {
            Some(spec) if !is_trailing(ordertype) => spec.effective(last, side),
            _ => last,
        };
        if ref_price <= Decimal::ZERO {
            return Err(invalid("price"));
        }
        let (base_vol, cost) = if viqc {
            let base = (vol / ref_price)
                .round_dp_with_strategy(pair.lot_decimals, RoundingStrategy::ToZero);
            (base, vol)
        } else {
            (vol, vol * ref_price)
        };
        if base_vol < pair.ordermin() {
            return Err(e::ORDER_MINIMUM.into());
        }
        if cost < pair.costmin() {
            return Err(e::COST_MINIMUM.into());
        }

        // Uniqueness of cl_ord_id among the account's open orders.
        if let Some(c) = &cl_ord_id {
            if self
                .orders
                .iter()
                .any(|o| o.api_key == key && o.is_open() && o.cl_ord_id.as_ref() == Some(c))
            {
                return Err(e::DUPLICATE_ORDER.into());
            }
        }

        // Funds.
        let fee_rate = pair.taker_fee();
        let (hold_asset, need) = if side == "buy" {
            (pair.quote.clone(), cost + cost * fee_rate)
        } else {
            (pair.base.clone(), base_vol)
        };
        if (!validate || self.validate_checks_funds) && self.free(key, &hold_asset) < need {
            return Err(e::INSUFFICIENT_FUNDS.into());
        }

        if timeinforce == "GTD" && expiretm <= 0.0 {
            return Err(invalid("expiretm"));
        }
        if deadline.is_some_and(|d| d <= now) {
            return Err(e::DEADLINE_ELAPSED.into());
        }

        // Description.
        let pd = pair.pair_decimals;
        let descr_price = price.as_ref().map_or("0".into(), |s| s.display(pd));
        let descr_price2 = price2.as_ref().map_or("0".into(), |s| s.display(pd));
        let mut descr_order = format!(
            "{side} {} {} @ {}",
            fixed(vol, pair.lot_decimals),
            pair.altname,
            order_phrase(ordertype, &descr_price, &descr_price2)
        );
        if leverage != "none" {
            descr_order.push_str(&format!(" with {leverage} leverage"));
        }
        let descr_close = close.as_ref().map(|(ct, cp, cp2)| {
            let a = cp.as_ref().map_or("0".into(), |s| s.display(pd));
            let b = cp2.as_ref().map_or("0".into(), |s| s.display(pd));
            format!("close position @ {}", order_phrase(ct, &a, &b))
        });
        let mut descr = json!({ "order": descr_order });
        if let Some(c) = &descr_close {
            descr["close"] = json!(c);
        }
        if validate {
            return Ok(json!({ "descr": descr }));
        }

        // Book.
        let txid = self.next_txid();
        let mut order = BookedOrder {
            txid: txid.clone(),
            api_key: key.to_string(),
            params: p.clone(),
            pair: pair.id.clone(),
            altname: pair.altname.clone(),
            side: side.to_string(),
            ordertype: ordertype.to_string(),
            status: OrderStatus::Open,
            vol,
            base_vol,
            vol_exec: Decimal::ZERO,
            cost: Decimal::ZERO,
            fee: Decimal::ZERO,
            avg_price: Decimal::ZERO,
            effective_price: ref_price,
            descr_price,
            descr_price2,
            leverage,
            userref: userref.map(i64::from),
            cl_ord_id,
            oflags: if oflags.is_empty() {
                "fciq".to_string()
            } else {
                oflags.join(",")
            },
            timeinforce: timeinforce.to_string(),
            opentm: round_tm(now),
            closetm: 0.0,
            starttm: round_tm(starttm),
            expiretm: round_tm(expiretm),
            descr_order,
            descr_close: descr_close.unwrap_or_default(),
            reason: None,
            hold_asset,
            hold: need,
        };
        if ordertype == "market" {
            self.execute(&mut order, &pair, last, fee_rate, now);
        }
        self.orders.push(order);
        rec.booked.push(txid.clone());
        Ok(json!({ "descr": descr, "txid": [txid] }))
    }

    fn add_balance(&mut self, key: &str, asset: &str, delta: Decimal) {
        if let Some(a) = self.accounts.get_mut(key) {
            *a.balances.entry(asset.to_string()).or_default() += delta;
        }
    }

    /// Fills an order completely at `price`, moving balances (fee in quote).
    fn execute(
        &mut self,
        o: &mut BookedOrder,
        pair: &Pair,
        price: Decimal,
        fee_rate: Decimal,
        now: f64,
    ) {
        let cost = o.base_vol * price;
        let fee = (cost * fee_rate).round_dp(pair.cost_decimals);
        if o.side == "buy" {
            self.add_balance(&o.api_key, &pair.quote, -(cost + fee));
            self.add_balance(&o.api_key, &pair.base, o.base_vol);
        } else {
            self.add_balance(&o.api_key, &pair.base, -o.base_vol);
            self.add_balance(&o.api_key, &pair.quote, cost - fee);
        }
        o.vol_exec = o.base_vol;
        o.cost = cost;
        o.fee = fee;
        o.avg_price = price;
        o.status = OrderStatus::Closed;
        o.closetm = round_tm(now);
        o.hold = Decimal::ZERO;
    }

    /// Moves a pair's market to `price`, as trading would: the last trade
    /// becomes `price`, and every open `limit` order on the pair that the
    /// move crosses (a buy priced at or above it, a sell at or below it)
    /// fills at its own price with the maker fee, its hold released and its
    /// balances moved. The txids filled, oldest first; `None` if the pair is
    /// unknown or the price not positive.
    pub fn move_price(&mut self, pair: &str, price: Decimal, now: f64) -> Option<Vec<String>> {
        let id = self.find_pair(pair)?.id.clone();
        if !self.set_last_price(&id, price) {
            return None;
        }
        let crossed: Vec<String> = self
            .orders
            .iter()
            .filter(|o| o.is_open() && o.pair == id && o.ordertype == "limit")
            .filter(|o| match o.side.as_str() {
                "buy" => o.effective_price >= price,
                _ => o.effective_price <= price,
            })
            .map(|o| o.txid.clone())
            .collect();
        for txid in &crossed {
            self.fill_order(txid, now);
        }
        Some(crossed)
    }

    /// Fills an open order at its own price with the maker fee, as if the
    /// market had reached it. False if no open order has this txid.
    pub fn fill_order(&mut self, txid: &str, now: f64) -> bool {
        let Some(i) = self
            .orders
            .iter()
            .position(|o| o.txid == txid && o.is_open())
        else {
            return false;
        };
        let mut order = self.orders[i].clone();
        let Some(pair) = self.pairs.iter().find(|p| p.id == order.pair).cloned() else {
            return false;
        };
        let price = order.effective_price;
        self.execute(&mut order, &pair, price, pair.maker_fee(), now);
        self.orders[i] = order;
        true
    }

    fn order_json(&self, o: &BookedOrder) -> Value {
        let (pd, ld, cd) = self
            .pairs
            .iter()
            .find(|p| p.id == o.pair)
            .map_or((8, 8, 8), |p| {
                (p.pair_decimals, p.lot_decimals, p.cost_decimals)
            });
        let mut v = json!({
            "refid": null,
            "userref": o.userref.unwrap_or(0),
            "status": o.status,
            "opentm": o.opentm,
            "starttm": o.starttm,
            "expiretm": o.expiretm,
            "descr": {
                "pair": o.altname,
                "type": o.side,
                "ordertype": o.ordertype,
                "price": o.descr_price,
                "price2": o.descr_price2,
                "leverage": o.leverage,
                "order": o.descr_order,
                "close": o.descr_close,
            },
            "vol": fixed(o.vol, ld),
            "vol_exec": fixed(o.vol_exec, ld),
            "cost": fixed(o.cost, cd),
            "fee": fixed(o.fee, cd),
            "price": fixed(o.avg_price, pd),
            "stopprice": fixed(Decimal::ZERO, pd),
            "limitprice": fixed(Decimal::ZERO, pd),
            "misc": "",
            "oflags": o.oflags,
        });
        if let Some(c) = &o.cl_ord_id {
            v["cl_ord_id"] = json!(c);
        }
        if let Some(t) = o.params.get("trigger") {
            v["trigger"] = json!(t);
        }
        if !o.is_open() {
            v["closetm"] = json!(o.closetm);
            v["reason"] = json!(o.reason);
        }
        v
    }

    fn filter_orders<'a>(
        &'a self,
        key: &'a str,
        p: &Params,
    ) -> Result<impl Iterator<Item = &'a BookedOrder> + 'a, String> {
        let userref = match p.get("userref") {
            Some(u) => Some(
                u.trim()
                    .parse::<i64>()
                    .map_err(|_| e::invalid_arguments("userref"))?,
            ),
            None => None,
        };
        let cl = p.get("cl_ord_id").cloned();
        Ok(self.orders.iter().filter(move |o| {
            o.api_key == key
                && userref.is_none_or(|u| o.userref == Some(u))
                && cl.as_ref().is_none_or(|c| o.cl_ord_id.as_ref() == Some(c))
        }))
    }

    fn open_orders(&self, key: &str, p: &Params) -> Res {
        let open: Map<String, Value> = self
            .filter_orders(key, p)?
            .filter(|o| o.is_open())
            .map(|o| (o.txid.clone(), self.order_json(o)))
            .collect();
        Ok(json!({ "open": open }))
    }

    fn time_bound(&self, key: &str, p: &Params, name: &str) -> Result<Option<f64>, String> {
        let Some(v) = p.get(name) else {
            return Ok(None);
        };
        if let Some(t) = plain_decimal(v.trim()).and_then(|d| d.to_string().parse::<f64>().ok()) {
            return Ok(Some(t));
        }
        self.orders
            .iter()
            .find(|o| o.api_key == key && o.txid == *v)
            .map(|o| Some(o.opentm))
            .ok_or_else(|| e::invalid_arguments(name))
    }

    fn closed_orders(&self, key: &str, p: &Params) -> Res {
        let start = self.time_bound(key, p, "start")?;
        let end = self.time_bound(key, p, "end")?;
        let ofs = match p.get("ofs") {
            Some(o) => o
                .trim()
                .parse::<usize>()
                .map_err(|_| e::invalid_arguments("ofs"))?,
            None => 0,
        };
        let closetime = p.get("closetime").map_or("both", String::as_str);
        if !["open", "close", "both"].contains(&closetime) {
            return Err(e::invalid_arguments("closetime"));
        }
        let in_range = |t: f64| start.is_none_or(|s| t > s) && end.is_none_or(|e| t <= e);
        let mut list: Vec<&BookedOrder> = self
            .filter_orders(key, p)?
            .filter(|o| !o.is_open())
            .filter(|o| match closetime {
                "open" => in_range(o.opentm),
                "close" => in_range(o.closetm),
                _ => in_range(o.opentm) || in_range(o.closetm),
            })
            .collect();
        list.reverse(); // newest first
        let count = list.len();
        let closed: Map<String, Value> = list
            .into_iter()
            .skip(ofs)
            .take(CLOSED_PAGE)
            .map(|o| (o.txid.clone(), self.order_json(o)))
            .collect();
        Ok(json!({ "closed": closed, "count": count }))
    }

    fn query_orders(&self, key: &str, p: &Params) -> Res {
        let txids: Vec<&str> = p
            .get("txid")
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if txids.is_empty() || txids.len() > 50 {
            return Err(e::invalid_arguments("txid"));
        }
        let userref = match p.get("userref") {
            Some(u) => Some(
                u.trim()
                    .parse::<i64>()
                    .map_err(|_| e::invalid_arguments("userref"))?,
            ),
            None => None,
        };
        let mut out = Map::new();
        for t in txids {
            let o = self
                .orders
                .iter()
                .find(|o| o.api_key == key && o.txid == t)
                .ok_or(e::UNKNOWN_ORDER)?;
            if userref.is_none_or(|u| o.userref == Some(u)) {
                out.insert(o.txid.clone(), self.order_json(o));
            }
        }
        Ok(Value::Object(out))
    }

    /// `TradesHistory`: one trade per executed order (the simulator fills
    /// orders whole), newest first, 50 per page from `ofs`; `start` / `end`
    /// bound the trade time (exclusive / inclusive, Unix seconds only).
    fn trades_history(&self, key: &str, p: &Params) -> Res {
        let bound = |name: &str| -> Result<Option<f64>, String> {
            match p.get(name) {
                None => Ok(None),
                Some(v) => plain_decimal(v.trim())
                    .and_then(|d| d.to_string().parse::<f64>().ok())
                    .map(Some)
                    .ok_or_else(|| e::invalid_arguments(name)),
            }
        };
        let (start, end) = (bound("start")?, bound("end")?);
        let ofs = match p.get("ofs") {
            Some(o) => o
                .trim()
                .parse::<usize>()
                .map_err(|_| e::invalid_arguments("ofs"))?,
            None => 0,
        };
        let mut fills: Vec<(usize, &BookedOrder)> = self
            .orders
            .iter()
            .enumerate()
            .filter(|(_, o)| o.api_key == key && o.vol_exec > Decimal::ZERO)
            .filter(|(_, o)| {
                start.is_none_or(|s| o.closetm > s) && end.is_none_or(|e| o.closetm <= e)
            })
            .collect();
        fills.sort_by(|a, b| b.1.closetm.total_cmp(&a.1.closetm).then(b.0.cmp(&a.0)));
        let count = fills.len();
        let trades: Map<String, Value> = fills
            .into_iter()
            .skip(ofs)
            .take(CLOSED_PAGE)
            .map(|(i, o)| {
                let (pd, ld, cd) = self
                    .pairs
                    .iter()
                    .find(|p| p.id == o.pair)
                    .map_or((8, 8, 8), |p| {
                        (p.pair_decimals, p.lot_decimals, p.cost_decimals)
                    });
                let trade = json!({
                    "ordertxid": o.txid,
                    "postxid": kraken_id('T', &format!("kraken-sim position {}", o.txid)),
                    "pair": o.pair,
                    "time": o.closetm,
                    "type": o.side,
                    "ordertype": o.ordertype,
                    "price": fixed(o.avg_price, pd),
                    "cost": fixed(o.cost, cd),
                    "fee": fixed(o.fee, cd),
                    "vol": fixed(o.vol_exec, ld),
                    "margin": fixed(Decimal::ZERO, cd),
                    "misc": "",
                    "trade_id": i + 1,
                    "maker": o.ordertype != "market",
                });
                (
                    kraken_id('T', &format!("kraken-sim trade {}", o.txid)),
                    trade,
                )
            })
            .collect();
        Ok(json!({ "trades": trades, "count": count }))
    }

    fn cancel(o: &mut BookedOrder, now: f64) {
        o.status = OrderStatus::Canceled;
        o.reason = Some("User requested".into());
        o.closetm = round_tm(now);
        o.hold = Decimal::ZERO;
    }

    fn cancel_order(&mut self, key: &str, p: &Params, now: f64) -> Res {
        let txid = p.get("txid").map(|t| t.trim().to_string());
        let cl = p.get("cl_ord_id").cloned();
        if txid.is_none() && cl.is_none() {
            return Err(e::invalid_arguments("txid"));
        }
        let userref = txid.as_ref().and_then(|t| t.parse::<i64>().ok());
        let mut count = 0;
        for o in &mut self.orders {
            let hit = o.api_key == key
                && o.is_open()
                && match (&txid, userref, &cl) {
                    (_, Some(u), _) => o.userref == Some(u),
                    (Some(t), None, _) => o.txid == *t,
                    (None, _, Some(c)) => o.cl_ord_id.as_ref() == Some(c),
                    (None, _, None) => false,
                };
            if hit {
                Self::cancel(o, now);
                count += 1;
            }
        }
        if count == 0 {
            return Err(e::UNKNOWN_ORDER.into());
        }
        Ok(json!({ "count": count, "pending": false }))
    }

    fn cancel_all(&mut self, key: &str, now: f64) -> Value {
        let mut count = 0;
        for o in &mut self.orders {
            if o.api_key == key && o.is_open() {
                Self::cancel(o, now);
                count += 1;
            }
        }
        json!({ "count": count, "pending": false })
    }

    fn balance_json(&self, key: &str) -> Value {
        let balances = self
            .accounts
            .get(key)
            .map(|a| a.balances.clone())
            .unwrap_or_default();
        let map: Map<String, Value> = balances
            .iter()
            .map(|(asset, v)| (asset.clone(), json!(fixed(*v, asset_decimals(asset)))))
            .collect();
        Value::Object(map)
    }

    fn balance_ex_json(&self, key: &str) -> Value {
        let balances = self
            .accounts
            .get(key)
            .map(|a| a.balances.clone())
            .unwrap_or_default();
        let map: Map<String, Value> = balances
            .iter()
            .map(|(asset, v)| {
                let dp = asset_decimals(asset);
                (
                    asset.clone(),
                    json!({
                        "balance": fixed(*v, dp),
                        "hold_trade": fixed(self.held(key, asset), dp),
                    }),
                )
            })
            .collect();
        Value::Object(map)
    }

    // -- public -------------------------------------------------------------

    /// Handles `GET /0/public/<Method>?query` and logs it.
    pub fn public(&mut self, http_method: &str, path: &str, now: f64) -> Reply {
        let (method, query) = split_method(path, "/0/public/").unwrap_or(("", ""));
        let params = parse_form(query);
        let mut rec = RequestRecord::new(self.next_seq(), now, http_method, path, "public");
        rec.method = Some(method.to_string());
        rec.params = params.clone();
        // Kraken serves public endpoints with GET only.
        let result = if http_method != "GET" {
            Err(e::UNKNOWN_METHOD.to_string())
        } else {
            match method {
                "Time" => Ok(Reply::ok(json!({
                    "unixtime": now as i64,
                    "rfc1123": time::rfc1123(now as i64),
                }))),
                "SystemStatus" => Ok(Reply::ok(json!({
                    "status": self.system_status,
                    "timestamp": time::rfc3339(now as i64),
                }))),
                // Serialised straight from the pairs, in Kraken's field order
                // (ids sorted, as Kraken lists them): the whole table of
                // Kraken's size is hundreds of kilobytes.
                "AssetPairs" => self.selected_pairs(&params).map(|pairs| {
                    let map: BTreeMap<&str, &Pair> =
                        pairs.into_iter().map(|p| (p.id.as_str(), p)).collect();
                    let result = serde_json::to_string(&map).expect("pairs serialise");
                    Reply::ok_raw(&result)
                }),
                "Ticker" => self.selected_pairs(&params).map(|pairs| {
                    let map: Map<String, Value> = pairs
                        .into_iter()
                        .map(|p| (p.id.clone(), self.ticker_json(p)))
                        .collect();
                    Reply::ok(Value::Object(map))
                }),
                _ => Err(e::UNKNOWN_METHOD.to_string()),
            }
        };
        let reply = match result {
            Ok(r) => r,
            Err(err) => {
                rec.errors = vec![err.clone()];
                Reply::error(&err)
            }
        };
        rec.status = Some(reply.status);
        self.requests.push(rec);
        reply
    }

    fn selected_pairs(&self, params: &Params) -> Result<Vec<&Pair>, String> {
        match params
            .get("pair")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            None => Ok(self.pairs.iter().collect()),
            Some(list) => list
                .split(',')
                .map(|name| {
                    self.find_pair(name)
                        .ok_or_else(|| e::UNKNOWN_PAIR.to_string())
                })
                .collect(),
        }
    }

    fn ticker_json(&self, pair: &Pair) -> Value {
        let last = self.last_prices.get(&pair.id).copied().unwrap_or_default();
        let pd = pair.pair_decimals;
        let tick = pair.tick_size();
        let f = |d: Decimal| fixed(d, pd);
        let pct = |n: i64| last * Decimal::new(n, 3);
        json!({
            "a": [f(last + tick), "1", "1.000"],
            "b": [f(last), "2", "2.000"],
            "c": [f(last), "0.00100000"],
            "v": ["1234.56789012", "2345.67890123"],
            "p": [f(pct(999)), f(pct(998))],
            "t": [12345, 23456],
            "l": [f(pct(980)), f(pct(970))],
            "h": [f(pct(1010)), f(pct(1020))],
            "o": f(pct(995)),
        })
    }
}

#[cfg(test)]
mod tests;
