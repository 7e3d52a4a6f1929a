//! A pair table of Kraken's real size and shape, for benchmarks and for
//! tests that must see a full `AssetPairs` answer (Kraken lists several
//! hundred spot pairs; its whole answer is hundreds of kilobytes).
//!
//! [`realistic_market`] keeps the default pairs and their prices unchanged
//! and adds synthetic pairs up to the requested count, deterministically:
//! the same count always gives the same table, byte for byte.
//!
//! - Bases: Kraken's legacy assets (`XXBT`, `XETH`, `XLTC`, …), a list of
//!   real tickers (`ADA`, `SOL`, `DOT`, …), then generated names of three to
//!   five letters; fiat and stablecoin crosses (`EUR/USD`, `USDT/USD`, …).
//! - Quotes: `USD` and `EUR` for every base; `USDT`, `XBT`, `USDC`, `ETH`,
//!   `GBP`, `CAD`, `AUD`, `JPY`, `CHF` for the better-ranked bases, when the
//!   price in that quote keeps at least five significant digits.
//! - Ids: Kraken's legacy `X…Z…` form (`XLTCZUSD`, `XETHXXBT`, `ZEURZUSD`)
//!   when both assets are legacy ones (`XXDG` excepted, as on Kraken), the
//!   altname otherwise.
//! - Rules: `pair_decimals` from the price (five or six significant digits),
//!   `tick_size` one unit of the last decimal, `lot_decimals` 8 (fewer for
//!   very cheap assets), `ordermin` a round amount worth a few dollars,
//!   `costmin` about half a dollar in the quote, Kraken's fee tiers (the
//!   stablecoin schedule for fiat and stablecoin crosses), leverage for the
//!   larger markets, position limits from the price, and a few pairs in
//!   `cancel_only`, `post_only`, `limit_only` or `reduce_only`.

use super::{default_last_prices, default_pairs, Pair, MAKER_FEES, TAKER_FEES};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

/// How many spot pairs Kraken listed when the realistic table was sized.
/// With this many pairs the simulator's whole `AssetPairs` body is 601,702
/// bytes (every field on every pair, ten fee tiers each, about 745 bytes a
/// pair).
pub const KRAKEN_PAIR_COUNT: usize = 808;

/// A quote currency: its name in altnames and wsnames, its asset id, its
/// value in USD, the `cost_decimals` and `costmin` of its pairs, and how
/// many of the ranked bases are quoted in it.
struct Quote {
    name: &'static str,
    asset: &'static str,
    usd: &'static str,
    cost_decimals: u32,
    costmin: &'static str,
    ranks: usize,
}

const fn quote(
    name: &'static str,
    asset: &'static str,
    usd: &'static str,
    cost_decimals: u32,
    costmin: &'static str,
    ranks: usize,
) -> Quote {
    Quote {
        name,
        asset,
        usd,
        cost_decimals,
        costmin,
        ranks,
    }
}

/// Quotes in the order a base's pairs are listed.
const QUOTES: [Quote; 11] = [
    quote("USD", "ZUSD", "1", 5, "0.5", usize::MAX),
    quote("EUR", "ZEUR", "1.08", 5, "0.45", usize::MAX),
    quote("USDT", "USDT", "1", 5, "0.5", 90),
    quote("XBT", "XXBT", "67000", 10, "0.00001", 70),
    quote("USDC", "USDC", "1", 5, "0.5", 60),
    quote("ETH", "XETH", "3500", 8, "0.0002", 35),
    quote("GBP", "ZGBP", "1.27", 5, "0.4", 40),
    quote("CAD", "ZCAD", "0.73", 5, "0.7", 16),
    quote("AUD", "ZAUD", "0.66", 5, "0.75", 16),
    quote("JPY", "ZJPY", "0.0067", 3, "75", 10),
    quote("CHF", "CHF", "1.13", 5, "0.45", 10),
];

/// Fiat and stablecoin crosses: base name, base asset, base USD value, quotes.
const CROSSES: [(&str, &str, &str, &[&str]); 8] = [
    (
        "USDT",
        "USDT",
        "1",
        &["USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF"],
    ),
    (
        "USDC",
        "USDC",
        "1",
        &["USD", "EUR", "GBP", "CAD", "AUD", "USDT", "CHF"],
    ),
    ("DAI", "DAI", "1", &["USD", "EUR", "USDT"]),
    ("PYUSD", "PYUSD", "1", &["USD", "EUR"]),
    (
        "EUR",
        "ZEUR",
        "1.08",
        &["USD", "GBP", "CAD", "JPY", "CHF", "AUD"],
    ),
    ("GBP", "ZGBP", "1.27", &["USD"]),
    ("USD", "ZUSD", "1", &["CAD", "JPY", "CHF"]),
    ("AUD", "ZAUD", "0.66", &["USD", "JPY"]),
];

/// Crypto bases in rank order: name, asset id, USD price (empty: derived
/// from the name's rank). The first ones are Kraken's legacy assets and the
/// defaults' bases, at the defaults' prices.
const BASES: &[(&str, &str, &str)] = &[
    ("XBT", "XXBT", "67000"),
    ("ETH", "XETH", "3500"),
    ("SOL", "SOL", "150"),
    ("XDG", "XXDG", "0.15"),
    ("ADA", "ADA", "0.432"),
    ("XRP", "XXRP", "0.52"),
    ("DOT", "DOT", "7.2"),
    ("LTC", "XLTC", "84"),
    ("LINK", "LINK", "14.5"),
    ("AVAX", "AVAX", "36"),
    ("ATOM", "ATOM", "8.9"),
    ("POL", "POL", "0.72"),
    ("UNI", "UNI", "7.8"),
    ("XLM", "XXLM", "0.11"),
    ("XMR", "XXMR", "165"),
    ("ETC", "XETC", "27"),
    ("TRX", "TRX", "0.12"),
    ("ALGO", "ALGO", "0.18"),
    ("AAVE", "AAVE", "95"),
    ("FIL", "FIL", "5.9"),
    ("NEAR", "NEAR", "6.8"),
    ("XTZ", "XTZ", "0.95"),
    ("ZEC", "XZEC", "25"),
    ("BCH", "BCH", "480"),
    ("SHIB", "SHIB", "0.0000245"),
    ("PEPE", "PEPE", "0.0000089"),
    ("ARB", "ARB", "1.05"),
    ("OP", "OP", "2.4"),
    ("INJ", "INJ", "26"),
    ("SUI", "SUI", "1.1"),
    ("APT", "APT", "8.7"),
    ("TIA", "TIA", "9.8"),
    ("MKR", "MKR", "2800"),
    ("WBTC", "WBTC", "66950"),
    ("MLN", "XMLN", "21"),
    ("REP", "XREP", "0.9"),
    ("SEI", "SEI", ""),
    ("RENDER", "RENDER", ""),
    ("GRT", "GRT", ""),
    ("LDO", "LDO", ""),
    ("SNX", "SNX", ""),
    ("CRV", "CRV", ""),
    ("COMP", "COMP", ""),
    ("SAND", "SAND", ""),
    ("MANA", "MANA", ""),
    ("AXS", "AXS", ""),
    ("APE", "APE", ""),
    ("IMX", "IMX", ""),
    ("FET", "FET", ""),
    ("KSM", "KSM", ""),
    ("FLOW", "FLOW", ""),
    ("EGLD", "EGLD", ""),
    ("MINA", "MINA", ""),
    ("KAVA", "KAVA", ""),
    ("QNT", "QNT", ""),
    ("ENS", "ENS", ""),
    ("BAT", "BAT", ""),
    ("CHZ", "CHZ", ""),
    ("GALA", "GALA", ""),
    ("ICP", "ICP", ""),
    ("HBAR", "HBAR", ""),
    ("VET", "VET", ""),
    ("EOS", "EOS", ""),
    ("ZRX", "ZRX", ""),
    ("SUSHI", "SUSHI", ""),
    ("YFI", "YFI", ""),
    ("1INCH", "1INCH", ""),
    ("BAL", "BAL", ""),
    ("STORJ", "STORJ", ""),
    ("ANKR", "ANKR", ""),
    ("LRC", "LRC", ""),
    ("SKL", "SKL", ""),
    ("BNT", "BNT", ""),
    ("KNC", "KNC", ""),
    ("UMA", "UMA", ""),
    ("BAND", "BAND", ""),
    ("OXT", "OXT", ""),
    ("GNO", "GNO", ""),
    ("NANO", "NANO", ""),
    ("SC", "SC", ""),
    ("DASH", "DASH", ""),
    ("WAVES", "WAVES", ""),
    ("ICX", "ICX", ""),
    ("LSK", "LSK", ""),
    ("OMG", "OMG", ""),
    ("QTUM", "QTUM", ""),
    ("KEEP", "KEEP", ""),
    ("MOVR", "MOVR", ""),
    ("GLMR", "GLMR", ""),
    ("ASTR", "ASTR", ""),
    ("ROSE", "ROSE", ""),
    ("RUNE", "RUNE", ""),
    ("CVX", "CVX", ""),
    ("PERP", "PERP", ""),
    ("DYDX", "DYDX", ""),
    ("BLUR", "BLUR", ""),
    ("BONK", "BONK", ""),
    ("WIF", "WIF", ""),
    ("FLOKI", "FLOKI", ""),
    ("JUP", "JUP", ""),
    ("PYTH", "PYTH", ""),
    ("JTO", "JTO", ""),
    ("STX", "STX", ""),
    ("KAS", "KAS", ""),
    ("TON", "TON", ""),
    ("ENA", "ENA", ""),
    ("ETHFI", "ETHFI", ""),
    ("STRK", "STRK", ""),
    ("ZRO", "ZRO", ""),
    ("W", "W", ""),
    ("AKT", "AKT", ""),
    ("AR", "AR", ""),
    ("AUDIO", "AUDIO", ""),
    ("BICO", "BICO", ""),
    ("C98", "C98", ""),
    ("CELR", "CELR", ""),
    ("CTSI", "CTSI", ""),
    ("ENJ", "ENJ", ""),
    ("GMX", "GMX", ""),
    ("HNT", "HNT", ""),
    ("JASMY", "JASMY", ""),
    ("LPT", "LPT", ""),
    ("MASK", "MASK", ""),
    ("NMR", "NMR", ""),
    ("OGN", "OGN", ""),
    ("PHA", "PHA", ""),
    ("RARI", "RARI", ""),
    ("RLC", "RLC", ""),
    ("SGB", "SGB", ""),
    ("SPELL", "SPELL", ""),
    ("SRM", "SRM", ""),
    ("SUPER", "SUPER", ""),
    ("T", "T", ""),
    ("TRU", "TRU", ""),
    ("API3", "API3", ""),
    ("ACA", "ACA", ""),
    ("ALCX", "ALCX", ""),
    ("ALICE", "ALICE", ""),
    ("ANT", "ANT", ""),
    ("ATLAS", "ATLAS", ""),
    ("BADGER", "BADGER", ""),
    ("BOND", "BOND", ""),
    ("CFG", "CFG", ""),
    ("CQT", "CQT", ""),
    ("DENT", "DENT", ""),
    ("EWT", "EWT", ""),
    ("FARM", "FARM", ""),
    ("FIDA", "FIDA", ""),
    ("FXS", "FXS", ""),
    ("GHST", "GHST", ""),
    ("GTC", "GTC", ""),
    ("ICNT", "ICNT", ""),
    ("INTR", "INTR", ""),
    ("KAR", "KAR", ""),
    ("KILT", "KILT", ""),
    ("KINT", "KINT", ""),
    ("KP3R", "KP3R", ""),
    ("MC", "MC", ""),
    ("MIR", "MIR", ""),
    ("MNGO", "MNGO", ""),
    ("MULTI", "MULTI", ""),
    ("MXC", "MXC", ""),
    ("NODL", "NODL", ""),
    ("NYM", "NYM", ""),
    ("ORCA", "ORCA", ""),
    ("OXY", "OXY", ""),
    ("PLA", "PLA", ""),
    ("POLIS", "POLIS", ""),
    ("POND", "POND", ""),
    ("POWR", "POWR", ""),
    ("QI", "QI", ""),
    ("RAD", "RAD", ""),
    ("RAY", "RAY", ""),
    ("REN", "REN", ""),
    ("REQ", "REQ", ""),
    ("SAMO", "SAMO", ""),
    ("SBR", "SBR", ""),
    ("SDN", "SDN", ""),
    ("STEP", "STEP", ""),
    ("SYN", "SYN", ""),
    ("TEER", "TEER", ""),
    ("TOKE", "TOKE", ""),
    ("TVK", "TVK", ""),
    ("UNFI", "UNFI", ""),
    ("WOO", "WOO", ""),
    ("XCN", "XCN", ""),
    ("YGG", "YGG", ""),
];

/// Names no generated base may take: quotes, crosses, Kraken's synonyms.
const RESERVED: [&str; 8] = ["BTC", "DOGE", "XBT", "XDG", "USD", "EUR", "GBP", "JPY"];

/// splitmix64: a deterministic stream from a seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("bad decimal {s:?}"))
}

/// `10^exp` (negative `exp` for fractions).
fn pow10(exp: i32) -> Decimal {
    if exp >= 0 {
        Decimal::from(10u64.pow(exp as u32))
    } else {
        Decimal::new(1, (-exp) as u32)
    }
}

/// Digits before the point, or minus the zeros right after it
/// (`67000` → 5, `0.15` → 0, `0.0000245` → -4).
fn int_digits(d: Decimal) -> i32 {
    let n = d.normalize();
    let digits = n.mantissa().unsigned_abs().to_string().len() as i32;
    digits - n.scale() as i32
}

/// `d` rounded to one significant digit among 1, 2 and 5.
fn round_125(d: Decimal) -> Decimal {
    let unit = pow10(int_digits(d) - 1);
    let lead = d / unit;
    let step = if lead < Decimal::from(2) {
        1
    } else if lead < Decimal::from(5) {
        2
    } else {
        5
    };
    (Decimal::from(step) * unit).normalize()
}

/// `d` rounded to two significant digits, at least 1.
fn round_2sig(d: Decimal) -> u64 {
    let unit = pow10((int_digits(d) - 2).max(0));
    ((d / unit).round() * unit).to_u64().unwrap_or(1).max(1)
}

/// What a base contributes to each of its pairs.
struct Base {
    name: String,
    asset: String,
    usd: Decimal,
    rank: usize,
    lot_decimals: u32,
    ordermin: String,
    position_limits: (u64, u64),
}

impl Base {
    fn new(name: &str, asset: &str, usd: Decimal, rank: usize) -> Self {
        let h = mix(rank as u64 ^ 0x5EED);
        let lot_decimals = if usd < dec("0.0001") {
            4
        } else if usd < dec("0.01") {
            5
        } else if h % 7 == 3 {
            6
        } else {
            8
        };
        let worth = Decimal::from([2, 3, 5, 5, 10][(h >> 8) as usize % 5]);
        let mut ordermin = round_125(worth / usd);
        if ordermin.scale() > lot_decimals {
            ordermin = pow10(-(lot_decimals as i32));
        }
        let long = round_2sig(Decimal::from(18_000_000u64) / usd);
        Self {
            name: name.into(),
            asset: asset.into(),
            usd,
            rank,
            lot_decimals,
            ordermin: ordermin.normalize().to_string(),
            position_limits: (long, (long * 2 / 3).max(1)),
        }
    }
}

/// A USD price for a base with none given: four digits at a scale drawn
/// from the rank (mostly between 0.0001 and 100).
fn drawn_price(rank: usize) -> Decimal {
    let h = mix(rank as u64 ^ 0xC0FFEE);
    let mantissa = 1000 + (h % 9000) as i64;
    let scales = [1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 6, 6, 7, 8];
    Decimal::new(mantissa, scales[(h >> 16) as usize % scales.len()])
}

/// A generated base name: three to seven letters, not yet taken.
fn drawn_name(seq: u64, taken: &BTreeSet<String>) -> String {
    const C: &[u8] = b"BCDFGHKLMNPRSTVZ";
    const V: &[u8] = b"AEIOUY";
    let mut k = seq;
    loop {
        let mut h = mix(k ^ 0xBA5E);
        k += 1 << 32;
        let len = 3 + (h % 5) as usize;
        h /= 5;
        let mut name = String::with_capacity(len);
        for i in 0..len {
            let set = if i % 2 == 0 { C } else { V };
            name.push(set[(h % set.len() as u64) as usize] as char);
            h /= set.len() as u64;
        }
        let clash = RESERVED.iter().any(|r| name.contains(r))
            || QUOTES.iter().any(|q| q.name == name)
            || CROSSES.iter().any(|c| c.0 == name);
        if !clash && !taken.contains(&name) {
            return name;
        }
    }
}

/// Kraken's legacy `X`/`Z` asset ids that pair ids are built from (`XXDG`
/// is not one: its pairs are `XDGUSD`, `XDGEUR`).
const LEGACY: [&str; 16] = [
    "XXBT", "XETH", "XLTC", "XXRP", "XXLM", "XXMR", "XETC", "XZEC", "XMLN", "XREP", "ZUSD", "ZEUR",
    "ZGBP", "ZCAD", "ZJPY", "ZAUD",
];

fn legacy(asset: &str) -> bool {
    LEGACY.contains(&asset)
}

const STABLE_FEES: [(u64, f64); 6] = [
    (0, 0.2),
    (50_000, 0.16),
    (100_000, 0.12),
    (250_000, 0.08),
    (500_000, 0.04),
    (1_000_000, 0.0),
];

/// The statuses of the few generated pairs that are not `online`, by their
/// position among the generated pairs.
fn drawn_status(generated: usize) -> &'static str {
    if generated % 89 == 17 {
        "cancel_only"
    } else if generated % 101 == 53 {
        "post_only"
    } else if generated % 211 == 150 {
        "limit_only"
    } else if generated % 307 == 200 {
        "reduce_only"
    } else {
        "online"
    }
}

struct Builder {
    pairs: Vec<Pair>,
    prices: BTreeMap<String, Decimal>,
    spellings: BTreeSet<String>,
    target: usize,
    generated: usize,
}

impl Builder {
    fn full(&self) -> bool {
        self.pairs.len() >= self.target
    }

    /// Adds `base/quote` unless it exists, is full, or the price in the
    /// quote would need more than 10 decimals.
    fn add(&mut self, base: &Base, q: &Quote, cross: bool) {
        if self.full() || base.name == q.name {
            return;
        }
        let altname = format!("{}{}", base.name, q.name);
        let wsname = format!("{}/{}", base.name, q.name);
        if self.spellings.contains(&altname) || self.spellings.contains(&wsname) {
            return;
        }
        let price = base.usd / dec(q.usd);
        let h = mix((self.pairs.len() as u64) ^ 0xDEC1);
        let sig = 5 + (h % 2) as i32;
        let pd = sig - int_digits(price);
        if pd > 10 {
            return;
        }
        let pd = pd.max(0) as u32;
        let price = price.round_dp_with_strategy(pd, RoundingStrategy::MidpointAwayFromZero);
        if price <= Decimal::ZERO {
            return;
        }
        let id = if legacy(&base.asset) && legacy(q.asset) {
            format!("{}{}", base.asset, q.asset)
        } else {
            altname.clone()
        };
        let margin_quote = matches!(q.name, "USD" | "EUR" | "USDT" | "XBT");
        let leverage: &[u32] = match base.rank {
            _ if cross || !margin_quote => &[],
            0..=19 if matches!(q.name, "USD" | "EUR") => &[2, 3, 4, 5],
            0..=99 => &[2, 3],
            _ => &[],
        };
        let (fees, fees_maker) = if cross {
            (STABLE_FEES.to_vec(), STABLE_FEES.to_vec())
        } else {
            (TAKER_FEES.to_vec(), MAKER_FEES.to_vec())
        };
        let pair = Pair {
            id: id.clone(),
            altname: altname.clone(),
            wsname: wsname.clone(),
            aclass_base: "currency".into(),
            base: base.asset.clone(),
            aclass_quote: "currency".into(),
            quote: q.asset.into(),
            lot: "unit".into(),
            cost_decimals: q.cost_decimals,
            pair_decimals: pd,
            lot_decimals: base.lot_decimals,
            lot_multiplier: 1,
            leverage_buy: leverage.to_vec(),
            leverage_sell: leverage.to_vec(),
            fees,
            fees_maker,
            fee_volume_currency: "ZUSD".into(),
            margin_call: 80,
            margin_stop: 40,
            ordermin: base.ordermin.clone(),
            costmin: q.costmin.into(),
            tick_size: pow10(-(pd as i32)).to_string(),
            status: drawn_status(self.generated).into(),
            long_position_limit: base.position_limits.0,
            short_position_limit: base.position_limits.1,
        };
        self.generated += 1;
        self.spellings.extend([id.clone(), altname, wsname]);
        self.prices.insert(id, price);
        self.pairs.push(pair);
    }
}

fn find_quote(name: &str) -> &'static Quote {
    QUOTES
        .iter()
        .find(|q| q.name == name)
        .unwrap_or_else(|| panic!("no quote {name}"))
}

/// A pair table of `n` pairs shaped like Kraken's (at least the default
/// pairs) and the last trade price of each, by pair id.
///
/// The default pairs come first, unchanged, with their prices; then fiat
/// and stablecoin crosses, then every base's pairs in rank order.
pub fn realistic_market(n: usize) -> (Vec<Pair>, BTreeMap<String, Decimal>) {
    let pairs = default_pairs();
    let mut spellings = BTreeSet::new();
    for p in &pairs {
        spellings.extend([p.id.clone(), p.altname.clone(), p.wsname.clone()]);
    }
    let mut b = Builder {
        pairs,
        prices: default_last_prices(),
        spellings,
        target: n,
        generated: 0,
    };
    for (i, (name, asset, usd, quotes)) in CROSSES.iter().enumerate() {
        let base = Base::new(name, asset, dec(usd), 10_000 + i);
        for q in quotes.iter() {
            b.add(&base, find_quote(q), true);
        }
    }
    let mut taken: BTreeSet<String> = BASES.iter().map(|b| b.0.to_string()).collect();
    let mut rank = 0usize;
    while !b.full() {
        let base = match BASES.get(rank) {
            Some((name, asset, usd)) => {
                let usd = if usd.is_empty() {
                    drawn_price(rank)
                } else {
                    dec(usd)
                };
                Base::new(name, asset, usd, rank)
            }
            None => {
                let name = drawn_name(rank as u64, &taken);
                taken.insert(name.clone());
                Base::new(&name, &name, drawn_price(rank), rank)
            }
        };
        for q in QUOTES.iter().filter(|q| rank < q.ranks) {
            // Kraken quotes ETH in XBT but not XBT in ETH.
            if base.name == "XBT" && q.name == "ETH" {
                continue;
            }
            b.add(&base, q, false);
        }
        rank += 1;
    }
    (b.pairs, b.prices)
}

/// The pairs of [`realistic_market`].
pub fn realistic_pairs(n: usize) -> Vec<Pair> {
    realistic_market(n).0
}
