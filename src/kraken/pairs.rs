//! Kraken's pairs: `AssetPairs` read into the few rules the bridge needs, and symbol
//! resolution from any spelling a trader or TradingView produces (contract 2.2, `symbol`).
//!
//! Rules (kraken.md §10): strip an `EXCHANGE:` prefix, refuse a `.P` perpetual, match the pair
//! id, altname or wsname (with or without `/`), then base and quote with the `XBT`/`BTC` and
//! `XDG`/`DOGE` synonyms. `USD` and `USDT` are different quotes and never stand for each
//! other: only the `symbol_map` setting can map one market to another.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::str::FromStr;

/// The trading rules of one pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// Pair id, the key in `AssetPairs` (`XXBTZUSD`).
    pub id: String,
    /// `XBTUSD`.
    pub altname: String,
    /// `XBT/USD` (empty when Kraken gives none).
    pub wsname: String,
    /// Base asset id (`XXBT`).
    pub base: String,
    /// Quote asset id (`ZUSD`).
    pub quote: String,
    /// Decimals of prices.
    pub pair_decimals: u32,
    /// Decimals of volumes.
    pub lot_decimals: u32,
    /// Smallest price step.
    pub tick_size: Decimal,
    /// Smallest volume, base units.
    pub ordermin: Decimal,
    /// Smallest cost, quote units.
    pub costmin: Decimal,
    /// `online`, `cancel_only`, `post_only`, `limit_only`, `reduce_only`.
    pub status: String,
}

/// Why a symbol did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// No pair has that spelling.
    Unknown,
    /// A perpetual contract (`.P`), which Kraken spot does not trade.
    Perpetual,
    /// More than one pair has that spelling.
    Ambiguous,
}

/// Every pair Kraken lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(pub Vec<Pair>);

impl Pairs {
    /// Reads an `AssetPairs` answer (the whole envelope).
    pub fn from_asset_pairs(body: &[u8]) -> Result<Pairs, String> {
        let v: Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_string())?;
        if let Some(e) = v["error"].as_array().and_then(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .find(|e| e.starts_with('E'))
        }) {
            return Err(e.to_string());
        }
        let result = v["result"].as_object().ok_or("no result")?;
        let mut pairs = Vec::with_capacity(result.len());
        for (id, p) in result {
            let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            let dec = |k: &str| -> Option<Decimal> {
                match &p[k] {
                    Value::String(s) => Decimal::from_str(s).ok(),
                    Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
                    _ => None,
                }
            };
            // A precision no exact decimal can hold leaves the pair out, never a panic.
            let int = |k: &str| p[k].as_u64().filter(|n| *n <= 28).map(|n| n as u32);
            let (Some(pair_decimals), Some(lot_decimals)) =
                (int("pair_decimals"), int("lot_decimals"))
            else {
                continue;
            };
            pairs.push(Pair {
                id: id.clone(),
                altname: text("altname"),
                wsname: text("wsname"),
                base: text("base"),
                quote: text("quote"),
                pair_decimals,
                lot_decimals,
                tick_size: dec("tick_size").unwrap_or_else(|| Decimal::new(1, pair_decimals)),
                ordermin: dec("ordermin").unwrap_or_default(),
                costmin: dec("costmin").unwrap_or_default(),
                status: if p["status"].is_string() {
                    text("status")
                } else {
                    "online".into()
                },
            });
        }
        Ok(Pairs(pairs))
    }

    /// Resolves a symbol, after the `symbol_map` overrides (`TVSYMBOL=KRAKENPAIR`).
    pub fn resolve(
        &self,
        symbol: &str,
        symbol_map: &[(String, String)],
    ) -> Result<&Pair, Unresolved> {
        let s = symbol.trim().to_ascii_uppercase();
        if let Some((_, target)) = symbol_map.iter().find(|(from, _)| {
            from.eq_ignore_ascii_case(&s) || from.eq_ignore_ascii_case(strip_exchange(&s))
        }) {
            return self
                .exact(&target.to_ascii_uppercase())
                .ok_or(Unresolved::Unknown);
        }
        let s = strip_exchange(&s);
        if s.ends_with(".P") {
            return Err(Unresolved::Perpetual);
        }
        if let Some(p) = self.exact(s) {
            return Ok(p);
        }
        let matches: Vec<&Pair> = self
            .0
            .iter()
            .filter(|p| spellings(p).iter().any(|sp| sp == s))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(Unresolved::Unknown),
            _ => Err(Unresolved::Ambiguous),
        }
    }

    fn exact(&self, s: &str) -> Option<&Pair> {
        self.0.iter().find(|p| {
            p.id == s
                || p.altname == s
                || (!p.wsname.is_empty() && (p.wsname == s || p.wsname.replace('/', "") == s))
        })
    }
}

impl Pair {
    /// Whether `asset` (upper-case, as `position_reserve` names it) is this pair's base
    /// asset: Kraken's asset id (`XXBT`), the base of its wsname (`XBT`), or a synonym of
    /// that (`BTC`).
    pub fn has_base(&self, asset: &str) -> bool {
        if asset == self.base {
            return true;
        }
        self.wsname
            .split_once('/')
            .is_some_and(|(base, _)| synonyms(base).contains(&asset))
    }
}

/// What a symbol is looked up as: the `symbol_map` target when it is mapped, otherwise the
/// symbol without its exchange prefix, upper-case. It names the symbol's cache entry and
/// is the first `pair` asked of `AssetPairs`.
pub fn lookup_name(symbol: &str, symbol_map: &[(String, String)]) -> String {
    let s = symbol.trim().to_ascii_uppercase();
    match symbol_map.iter().find(|(from, _)| {
        from.eq_ignore_ascii_case(&s) || from.eq_ignore_ascii_case(strip_exchange(&s))
    }) {
        Some((_, target)) => target.to_ascii_uppercase(),
        None => strip_exchange(&s).to_string(),
    }
}

/// The `pair` values to ask `AssetPairs` for, in order, before falling back to the whole
/// list: the lookup name, then with Kraken's own `XBT` and `XDG` for `BTC` and `DOGE`
/// (`BTCUSD` is `XBTUSD` on Kraken). Never one with characters Kraken's names do not use.
pub fn pair_queries(symbol: &str, symbol_map: &[(String, String)]) -> Vec<String> {
    let name = lookup_name(symbol, symbol_map);
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'.')
    };
    if !plain(&name) || name.ends_with(".P") {
        return Vec::new();
    }
    let mut out = vec![name.clone()];
    let kraken = name.replace("BTC", "XBT").replace("DOGE", "XDG");
    if kraken != name {
        out.push(kraken);
    }
    out
}

fn strip_exchange(s: &str) -> &str {
    s.rsplit_once(':').map_or(s, |(_, rest)| rest)
}

/// `XBT` ↔ `BTC`, `XDG` ↔ `DOGE`.
fn synonyms(asset: &str) -> Vec<&str> {
    match asset {
        "XBT" | "BTC" => vec!["XBT", "BTC"],
        "XDG" | "DOGE" => vec!["XDG", "DOGE"],
        other => vec![other],
    }
}

/// Every spelling of a pair from its wsname's base and quote and their synonyms.
fn spellings(p: &Pair) -> Vec<String> {
    let Some((base, quote)) = p.wsname.split_once('/') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for b in synonyms(base) {
        for q in synonyms(quote) {
            out.push(format!("{b}{q}"));
            out.push(format!("{b}/{q}"));
        }
    }
    out
}

/// Parses the `symbol_map` setting: `TVSYMBOL=KRAKENPAIR,...`.
pub fn parse_symbol_map(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (from, to) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}` is not TVSYMBOL=KRAKENPAIR"))?;
            let (from, to) = (from.trim(), to.trim());
            let ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/:._-".contains(&b))
            };
            if ok(from) && ok(to) {
                Ok((from.to_ascii_uppercase(), to.to_ascii_uppercase()))
            } else {
                Err(format!("`{entry}` is not TVSYMBOL=KRAKENPAIR"))
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A subset of Kraken's real AssetPairs answer (values as Kraken publishes them).
    pub const ASSET_PAIRS: &str = r#"{"error":[],"result":{
      "XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT","quote":"ZUSD","pair_decimals":1,"cost_decimals":5,"lot_decimals":8,"ordermin":"0.00005","costmin":"0.5","tick_size":"0.1","status":"online"},
      "XBTUSDT":{"altname":"XBTUSDT","wsname":"XBT/USDT","base":"XXBT","quote":"USDT","pair_decimals":1,"cost_decimals":5,"lot_decimals":8,"ordermin":"0.00005","costmin":"0.5","tick_size":"0.1","status":"online"},
      "XETHZUSD":{"altname":"ETHUSD","wsname":"ETH/USD","base":"XETH","quote":"ZUSD","pair_decimals":2,"cost_decimals":5,"lot_decimals":8,"ordermin":"0.002","costmin":"0.5","tick_size":"0.01","status":"online"},
      "SOLUSD":{"altname":"SOLUSD","wsname":"SOL/USD","base":"SOL","quote":"ZUSD","pair_decimals":2,"cost_decimals":5,"lot_decimals":8,"ordermin":"0.02","costmin":"0.5","tick_size":"0.01","status":"online"},
      "XDGUSD":{"altname":"XDGUSD","wsname":"XDG/USD","base":"XXDG","quote":"ZUSD","pair_decimals":7,"cost_decimals":5,"lot_decimals":8,"ordermin":"20","costmin":"0.5","tick_size":"0.0000001","status":"online"},
      "ADAEUR":{"altname":"ADAEUR","wsname":"ADA/EUR","base":"ADA","quote":"ZEUR","pair_decimals":6,"cost_decimals":5,"lot_decimals":8,"ordermin":"5","costmin":"0.5","tick_size":"0.000001","status":"cancel_only"}
    }}"#;

    pub fn pairs() -> Pairs {
        Pairs::from_asset_pairs(ASSET_PAIRS.as_bytes()).unwrap()
    }

    #[test]
    fn names_a_pairs_base_asset_every_way_an_operator_writes_it() {
        let p = pairs();
        let xbt = p.resolve("XBTUSD", &[]).unwrap();
        for name in ["XXBT", "XBT", "BTC"] {
            assert!(xbt.has_base(name), "{name}");
        }
        for name in ["USD", "ZUSD", "ETH", "XBTUSD", ""] {
            assert!(!xbt.has_base(name), "{name}");
        }
    }

    #[test]
    fn reads_asset_pairs() {
        let p = pairs();
        assert_eq!(p.0.len(), 6);
        let xbt = p.resolve("XBTUSD", &[]).unwrap();
        assert_eq!(xbt.id, "XXBTZUSD");
        assert_eq!(xbt.lot_decimals, 8);
        assert_eq!(xbt.tick_size, Decimal::new(1, 1));
        assert_eq!(xbt.ordermin, Decimal::from_str("0.00005").unwrap());
        assert!(Pairs::from_asset_pairs(br#"{"error":["EGeneral:Internal error"]}"#).is_err());
        // A malformed pair (found by reading the fuzz results) is skipped, not a panic.
        let odd = br#"{"error":[],"result":{"X":{"altname":"X","wsname":"A/B","pair_decimals":40,"lot_decimals":8}}}"#;
        assert_eq!(Pairs::from_asset_pairs(odd).unwrap().0.len(), 0);
    }

    /// One pair exactly as Kraken shapes it (fee tiers, leverage lists, margin fields), a
    /// numeric `ordermin`, an unreadable pair and a `null` one: what is not used is skipped,
    /// what is odd leaves only that pair out.
    #[test]
    fn reads_kraken_shaped_answers_keeping_only_what_it_uses() {
        let body = br#"{"error":[],"result":{
          "XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","aclass_base":"currency","base":"XXBT",
            "aclass_quote":"currency","quote":"ZUSD","lot":"unit","cost_decimals":5,"pair_decimals":1,
            "lot_decimals":8,"lot_multiplier":1,"leverage_buy":[2,3,4,5],"leverage_sell":[2,3,4,5],
            "fees":[[0,0.4],[10000,0.35],[50000,0.24]],"fees_maker":[[0,0.25],[10000,0.2]],
            "fee_volume_currency":"ZUSD","margin_call":80,"margin_stop":40,"ordermin":0.00005,
            "costmin":"0.5","tick_size":"0.1","status":"online","long_position_limit":270,
            "short_position_limit":180},
          "BAD":{"altname":"BAD","pair_decimals":"1","lot_decimals":8},
          "GONE":null
        }}"#;
        let p = Pairs::from_asset_pairs(body).unwrap();
        assert_eq!(p.0.len(), 1);
        let xbt = &p.0[0];
        assert_eq!(
            (xbt.id.as_str(), xbt.altname.as_str(), xbt.wsname.as_str()),
            ("XXBTZUSD", "XBTUSD", "XBT/USD")
        );
        assert_eq!((xbt.base.as_str(), xbt.quote.as_str()), ("XXBT", "ZUSD"));
        assert_eq!((xbt.pair_decimals, xbt.lot_decimals), (1, 8));
        assert_eq!(xbt.ordermin, Decimal::from_str("0.00005").unwrap());
        assert_eq!(xbt.costmin, Decimal::from_str("0.5").unwrap());
        assert_eq!(xbt.tick_size, Decimal::new(1, 1));
        assert_eq!(xbt.status, "online");
        // Errors: the first `E` one wins; an envelope without a result is an error too.
        let err = br#"{"error":["WGeneral:Notice","EQuery:Unknown asset pair"]}"#;
        assert_eq!(
            Pairs::from_asset_pairs(err),
            Err("EQuery:Unknown asset pair".to_string())
        );
        assert!(Pairs::from_asset_pairs(br#"{"error":[]}"#).is_err());
        assert!(Pairs::from_asset_pairs(b"<html>").is_err());
    }

    #[test]
    fn resolves_every_spelling() {
        let p = pairs();
        for (symbol, id) in [
            ("XBTUSD", "XXBTZUSD"),
            ("BTCUSD", "XXBTZUSD"),
            ("btcusd", "XXBTZUSD"),
            ("BTC/USD", "XXBTZUSD"),
            ("XBT/USD", "XXBTZUSD"),
            ("KRAKEN:XBTUSD", "XXBTZUSD"),
            ("KRAKEN:BTCUSD", "XXBTZUSD"),
            ("XXBTZUSD", "XXBTZUSD"),
            ("BTCUSDT", "XBTUSDT"),
            ("KRAKEN:XBTUSDT", "XBTUSDT"),
            ("ETHUSD", "XETHZUSD"),
            ("DOGEUSD", "XDGUSD"),
            ("XDGUSD", "XDGUSD"),
            ("DOGE/USD", "XDGUSD"),
            ("solusd", "SOLUSD"),
            ("ADAEUR", "ADAEUR"),
        ] {
            assert_eq!(
                p.resolve(symbol, &[]).map(|p| p.id.as_str()),
                Ok(id),
                "{symbol}"
            );
        }
    }

    #[test]
    fn never_usdt_for_usd_and_no_perpetuals() {
        let p = pairs();
        assert_eq!(p.resolve("ETHUSDT", &[]), Err(Unresolved::Unknown));
        assert_eq!(p.resolve("SOLUSDT", &[]), Err(Unresolved::Unknown));
        assert_eq!(p.resolve("BTCUSDT.P", &[]), Err(Unresolved::Perpetual));
        assert_eq!(
            p.resolve("BINANCE:BTCUSDT.P", &[]),
            Err(Unresolved::Perpetual)
        );
        assert_eq!(p.resolve("AAPL", &[]), Err(Unresolved::Unknown));
        assert_eq!(p.resolve("", &[]), Err(Unresolved::Unknown));
    }

    #[test]
    fn lookup_names_and_pair_queries() {
        let none: Vec<(String, String)> = Vec::new();
        assert_eq!(lookup_name(" kraken:btcusd ", &none), "BTCUSD");
        assert_eq!(pair_queries("KRAKEN:BTCUSD", &none), ["BTCUSD", "XBTUSD"]);
        assert_eq!(pair_queries("XBTUSD", &none), ["XBTUSD"]);
        assert_eq!(pair_queries("DOGE/USD", &none), ["DOGE/USD", "XDG/USD"]);
        assert!(pair_queries("BTCUSDT.P", &none).is_empty());
        assert!(pair_queries("XBT USD", &none).is_empty());
        let map = parse_symbol_map("ETHUSDT=ETHUSD").unwrap();
        assert_eq!(lookup_name("BINANCE:ETHUSDT", &map), "ETHUSD");
        assert_eq!(pair_queries("ethusdt", &map), ["ETHUSD"]);
        // Whatever was asked, the answer is resolved by the same rules as the whole list.
        let p = pairs();
        let subset = Pairs(vec![p.resolve("XBTUSD", &none).unwrap().clone()]);
        assert_eq!(subset.resolve("BTCUSD", &none).unwrap().id, "XXBTZUSD");
        assert_eq!(subset.resolve("BTCUSDT", &none), Err(Unresolved::Unknown));
    }

    #[test]
    fn symbol_map_overrides() {
        let p = pairs();
        let map = parse_symbol_map("ETHUSDT=ETHUSD, xbtusd.p = XBTUSD").unwrap();
        assert_eq!(p.resolve("ETHUSDT", &map).unwrap().id, "XETHZUSD");
        assert_eq!(p.resolve("BINANCE:ETHUSDT", &map).unwrap().id, "XETHZUSD");
        assert_eq!(p.resolve("XBTUSD.P", &map).unwrap().id, "XXBTZUSD");
        let bad = parse_symbol_map("ETHUSDT=NOPE").unwrap();
        assert_eq!(p.resolve("ETHUSDT", &bad), Err(Unresolved::Unknown));
        assert!(parse_symbol_map("ETHUSDT").is_err());
        assert!(parse_symbol_map("A=B c").is_err());
        assert_eq!(parse_symbol_map(" ").unwrap(), vec![]);
    }
}
