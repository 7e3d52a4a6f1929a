//! `kraken-sim`: runs the Kraken spot REST simulator until killed.
//!
//! ```text
//! kraken-sim [--listen ADDR] [--api-key KEY] [--api-secret BASE64] [--otp OTP]
//!            [--api-keys JSON] [--rate-tier starter|intermediate|pro|none] [--pairs N|none]
//!            [--permissions all|none|LIST]
//! kraken-sim --print-asset-pairs N
//! ```
//!
//! Defaults: `--listen 127.0.0.1:18081`, the test account (`sim-api-key-local` and
//! Kraken's published example secret), no REST rate limit, the small pair
//! table, a key with every permission. `SIM_API_KEY` / `SIM_API_SECRET` /
//! `SIM_OTP` / `SIM_API_KEYS` / `SIM_RATE_TIER` / `SIM_PAIRS` / `SIM_PERMISSIONS` are read
//! when the flags are absent. `--api-keys` adds further keys of the same account, in the
//! shape of the bridge's `kraken_api_keys` (`[{"api_key":"…","api_secret":"…"}]`): each its
//! own nonces and REST counter, the account's orders and balances. `--permissions` gives the key only these permissions
//! (a comma list of `query_funds`, `query_open_orders`, `query_closed_orders`,
//! `create_orders`, `cancel_orders`; `all` or `none`): a private call lacking
//! its permission answers `EGeneral:Permission denied`, as Kraken does. `--rate-tier` turns on
//! Kraken's REST rate counter with that tier's limits (see
//! `kraken_sim::RateTier`). `--pairs N` serves a pair table of Kraken's size
//! and shape, the default pairs plus synthetic ones up to N in all (Kraken
//! lists 808; see `kraken_sim::realistic_market`); `none`, `0` or empty keep
//! the small table. One line per request goes to stderr; secrets and
//! signatures are never printed.
//!
//! `--print-asset-pairs N` prints the body of the `AssetPairs` answer with
//! the N-pair table to stdout, byte for byte as it is served (no trailing
//! newline), and exits without listening: a fixture for benchmarks.

use kraken_sim::{realistic_asset_pairs_body, Account, Permission, RateTier, Sim, SimOptions};
use std::io::Write as _;
use std::net::SocketAddr;

const USAGE: &str = "usage: kraken-sim [--listen ADDR] [--api-key KEY] [--api-secret BASE64] \
                     [--otp OTP] [--api-keys JSON] [--rate-tier starter|intermediate|pro|none] [--pairs N|none] \
                     [--permissions all|none|LIST]\n       \
                     kraken-sim --print-asset-pairs N";

/// A pair count; `none`, `0` or empty for the small default table.
fn parse_pairs(text: &str) -> anyhow::Result<Option<usize>> {
    match text.trim() {
        t if t.is_empty() || t.eq_ignore_ascii_case("none") => Ok(None),
        t => match t.parse::<usize>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(e) => Err(anyhow::anyhow!("{t:?} is not a pair count: {e}")),
        },
    }
}

/// `starter`, `intermediate`, `pro`; `none` or empty for no limit.
fn parse_tier(text: &str) -> anyhow::Result<Option<RateTier>> {
    match text.trim() {
        t if t.is_empty() || t.eq_ignore_ascii_case("none") => Ok(None),
        t => t.parse().map(Some).map_err(|e: String| anyhow::anyhow!(e)),
    }
}

fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:18081".to_string();
    let mut api_key = std::env::var("SIM_API_KEY").ok();
    let mut api_secret = std::env::var("SIM_API_SECRET").ok();
    let mut otp = std::env::var("SIM_OTP").ok();
    let mut more_keys = std::env::var("SIM_API_KEYS").ok();
    let mut rate_tier = std::env::var("SIM_RATE_TIER").ok();
    let mut pairs = std::env::var("SIM_PAIRS").ok();
    let mut permissions = std::env::var("SIM_PERMISSIONS").ok();
    let mut print_asset_pairs = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            return Ok(());
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => anyhow::bail!("{flag} needs a value\n{USAGE}"),
        };
        match flag.as_str() {
            "--listen" => listen = value,
            "--api-key" => api_key = Some(value),
            "--api-secret" => api_secret = Some(value),
            "--otp" => otp = Some(value),
            "--api-keys" => more_keys = Some(value),
            "--rate-tier" => rate_tier = Some(value),
            "--pairs" => pairs = Some(value),
            "--permissions" => permissions = Some(value),
            "--print-asset-pairs" => print_asset_pairs = Some(value),
            _ => anyhow::bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    if let Some(n) = print_asset_pairs {
        let n = parse_pairs(&n)
            .map_err(|e| anyhow::anyhow!("bad --print-asset-pairs: {e}\n{USAGE}"))?
            .ok_or_else(|| anyhow::anyhow!("--print-asset-pairs needs a count above 0"))?;
        let mut out = std::io::stdout().lock();
        out.write_all(realistic_asset_pairs_body(n).as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    let realistic_pairs = parse_pairs(pairs.as_deref().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("bad --pairs / SIM_PAIRS: {e}\n{USAGE}"))?;
    let listen: SocketAddr = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("bad --listen address {listen:?}: {e}"))?;
    let mut account = Account::test_default();
    if let Some(k) = api_key.filter(|k| !k.is_empty()) {
        account.api_key = k;
    }
    if let Some(s) = api_secret.filter(|s| !s.is_empty()) {
        account.api_secret = s;
    }
    account.otp = otp.filter(|o| !o.is_empty());
    if let Some(text) = more_keys.filter(|k| !k.trim().is_empty()) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Key {
            api_key: String,
            api_secret: String,
        }
        let keys: Vec<Key> = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("bad --api-keys / SIM_API_KEYS (a JSON list of {{\"api_key\",\"api_secret\"}}): line {}, column {}\n{USAGE}", e.line(), e.column())
        })?;
        for key in keys {
            account = account.with_key(key.api_key, key.api_secret);
        }
        eprintln!("kraken-sim: {} keys", 1 + account.more_keys.len());
    }
    if let Some(text) = permissions.filter(|p| !p.trim().is_empty()) {
        account.permissions = Permission::parse_list(&text)
            .map_err(|e| anyhow::anyhow!("bad --permissions / SIM_PERMISSIONS: {e}\n{USAGE}"))?;
    }
    if account.permissions.len() < Permission::ALL.len() {
        let names: Vec<_> = account.permissions.iter().map(|p| p.name()).collect();
        eprintln!("kraken-sim: key permissions: {}", names.join(","));
    }
    let rate_tier = parse_tier(rate_tier.as_deref().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("bad --rate-tier / SIM_RATE_TIER: {e}\n{USAGE}"))?;
    let sim = Sim::try_start(SimOptions {
        listen,
        accounts: vec![account],
        log_requests: true,
        rate_tier,
        realistic_pairs,
        ..SimOptions::default()
    })?;
    println!("kraken-sim listening on {}", sim.url());
    if realistic_pairs.is_some() {
        eprintln!("kraken-sim: {} pairs", sim.pair_count());
    }
    if let Some(tier) = rate_tier {
        eprintln!(
            "kraken-sim: REST rate limit {tier}: max {}, decay {}/s",
            tier.max(),
            tier.decay_per_sec()
        );
    }
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}
