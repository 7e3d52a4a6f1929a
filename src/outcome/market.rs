//! Market data: the pair, the last trade and the balances an alert's order needs, from the
//! store's pair cache or from Kraken, then the plan (contract 2.2 and 2.3).
//!
//! ```text
//! cancel_all ─▶ CancelAll
//! read the cached pair ─ fresh ─▶ check it ──────────────┐
//!   └ missing or stale ─▶ AssetPairs (its pair, then the whole list) ─▶ check it ─┤
//! Ticker, when the plan prices the order ─▶ [a position alert: its pair's turn (turn.rs)]
//!   ─▶ BalanceEx, when it sizes from a balance ─▶ plan ─ a position already at its target ─▶ 200 in_position
//! ```

use super::{CachedPair, Holding, List, Pending, Retry, Stage, PAIRS_TTL_SECS, PAIR_KEY_PREFIX};
use crate::alert::Action;
use crate::audit::Level;
use crate::bridge::Step;
use crate::kraken::pairs::{self, Pair, Pairs, Unresolved};
use crate::kraken::reply::{self, Transport};
use crate::plan::{self, Limits, Market};
use crate::reject::Reject;
use crate::store::{StoreOp, StoreReply};
use serde_json::json;

/// What the market stage has fetched so far.
#[derive(Debug, Default)]
pub(super) struct MarketData {
    /// The resolved pair.
    pub(super) pair: Option<Pair>,
    /// The last trade, when the plan prices the order.
    pub(super) last: Option<rust_decimal::Decimal>,
    /// The pair's balances, when the plan sizes from them.
    pub(super) balances: Option<reply::Balances>,
    /// The `pair` values to ask `AssetPairs` for before the whole list.
    pub(super) queries: Vec<String>,
    /// Which of them is asked now (`queries.len()`: the whole list).
    pub(super) query: usize,
    /// What becomes of the store's cached pair after the answer.
    pub(super) cache: PairCache,
}

impl MarketData {
    /// The resolved pair's Kraken id (`XXBTZUSD`), empty before it is resolved.
    pub(super) fn pair_id(&self) -> String {
        self.pair.as_ref().map(|p| p.id.clone()).unwrap_or_default()
    }

    /// The resolved pair's name (`XBTUSD`), empty before it is resolved.
    pub(super) fn pair_name(&self) -> String {
        self.pair
            .as_ref()
            .map(|p| p.altname.clone())
            .unwrap_or_default()
    }
}

/// What becomes of the store's cached pair after the answer.
#[derive(Debug, Default)]
pub(super) enum PairCache {
    /// Nothing to write: it was read from the store, or there is no store.
    #[default]
    Unchanged,
    /// A pair fetched from Kraken in this request: cached.
    Write(StoreOp),
    /// Kraken did not know the cached pair: forgotten.
    Forget,
}

impl Pending {
    /// After the claim: cancel everything, or fetch what the plan needs.
    pub(super) fn prepare(mut self) -> Step {
        if self.alert.action == Action::CancelAll {
            return self.call(Stage::Cancel, "CancelAll", &[]);
        }
        let symbol = self.alert.symbol.clone().unwrap_or_default();
        let map = &self.cx.config.symbol_map;
        if Pairs::default().resolve(&symbol, map) == Err(Unresolved::Perpetual) {
            let reason =
                format!("{symbol} is a perpetual contract; Kraken spot trades only spot pairs");
            return self.refuse(Reject::UnknownSymbol { reason });
        }
        self.market.queries = pairs::pair_queries(&symbol, map);
        if self.store.present() {
            let key = self.pair_key();
            self.store(Stage::PairsRead, StoreOp::Get(key))
        } else {
            self.fetch_pairs()
        }
    }

    pub(super) fn pair_key(&self) -> String {
        let symbol = self.alert.symbol.as_deref().unwrap_or_default();
        let name = pairs::lookup_name(symbol, &self.cx.config.symbol_map);
        format!("{PAIR_KEY_PREFIX}{name}")
    }

    pub(super) fn on_pairs_read(self, reply: StoreReply) -> Step {
        let now = self.cx.host.now.secs();
        let cached = match reply {
            StoreReply::Value(Some(bytes)) => serde_json::from_slice::<CachedPair>(&bytes)
                .ok()
                .filter(|c| now.saturating_sub(c.fetched_at) <= PAIRS_TTL_SECS),
            _ => None,
        };
        match cached {
            Some(c) => self.checked_pair(c.pair),
            None => self.fetch_pairs(),
        }
    }

    /// Asks `AssetPairs` for the next `pair` query, then for the whole list.
    pub(super) fn fetch_pairs(self) -> Step {
        match self.market.queries.get(self.market.query) {
            Some(q) => {
                let q = q.clone();
                self.public(Stage::PairsFetch, "AssetPairs", &[("pair", q)])
            }
            None => self.public(Stage::PairsFetch, "AssetPairs", &[]),
        }
    }

    pub(super) fn on_pairs_fetch(mut self, t: &Transport) -> Step {
        let whole_list = self.market.query >= self.market.queries.len();
        let pairs = match t {
            Transport::Reply { status: 200, body } => Pairs::from_asset_pairs(body),
            Transport::Reply { status, .. } => Err(format!("HTTP {status}")),
            Transport::NotSent(e) | Transport::Lost(e) => Err(e.clone()),
        };
        let pairs = match pairs {
            Ok(pairs) => pairs,
            // Kraken does not know that name: ask the next one.
            Err(e) if !whole_list && e.starts_with("EQuery:") => {
                self.market.query += 1;
                return self.fetch_pairs();
            }
            Err(e) => return self.unavailable(format!("could not read Kraken's pairs: {e}")),
        };
        let symbol = self.alert.symbol.clone().unwrap_or_default();
        let pair = match pairs.resolve(&symbol, &self.cx.config.symbol_map) {
            Ok(pair) => pair.clone(),
            Err(Unresolved::Unknown) if !whole_list => {
                self.market.query += 1;
                return self.fetch_pairs();
            }
            Err(why) => {
                let reason = match why {
                    Unresolved::Perpetual => format!(
                        "{symbol} is a perpetual contract; Kraken spot trades only spot pairs"
                    ),
                    Unresolved::Ambiguous => format!("{symbol} matches more than one Kraken pair; use the pair name or symbol_map"),
                    Unresolved::Unknown => format!("{symbol} matches no Kraken pair; use a Kraken pair name (e.g. XBTUSD) or symbol_map"),
                };
                return self.refuse(Reject::UnknownSymbol { reason });
            }
        };
        if !self.store.present() {
            return self.checked_pair(pair);
        }
        let cache = CachedPair {
            fetched_at: self.cx.host.now.secs(),
            pair,
        };
        let bytes = serde_json::to_vec(&cache).expect("a pair serialises");
        self.market.cache = PairCache::Write(StoreOp::Set(self.pair_key(), bytes));
        self.checked_pair(cache.pair)
    }

    /// The symbol's pair is known: the risk rules on it, then the market data.
    pub(super) fn checked_pair(mut self, pair: Pair) -> Step {
        let allowed = &self.cx.config.allowed_symbols;
        if !allowed.is_empty()
            && !allowed
                .iter()
                .any(|a| *a == pair.id || *a == pair.altname || *a == pair.wsname)
        {
            return self.refuse(Reject::SymbolNotAllowed { pair: pair.altname });
        }
        if pair.status != "online" {
            let reason = format!(
                "{} is {} on Kraken: no new orders",
                pair.altname, pair.status
            );
            return self.refuse(Reject::PairUnavailable { reason });
        }
        let id = pair.id.clone();
        self.market.pair = Some(pair);
        if plan::needs(&self.alert).ticker {
            self.public(Stage::Ticker, "Ticker", &[("pair", id)])
        } else {
            self.after_ticker()
        }
    }

    pub(super) fn on_ticker(mut self, t: &Transport) -> Step {
        let id = self.market.pair_id();
        match reply::last_price(t, &id) {
            Ok(last) => {
                self.market.last = Some(last);
                self.after_ticker()
            }
            Err(e) => self.unavailable(format!("could not read the last trade price: {e}")),
        }
    }

    pub(super) fn after_ticker(self) -> Step {
        if plan::needs(&self.alert).balance {
            self.take_turn()
        } else {
            self.make_plan()
        }
    }

    pub(super) fn on_balance(mut self, t: &Transport) -> Step {
        let (base, quote) = {
            let pair = self.market.pair.as_ref().expect("resolved");
            (pair.base.clone(), pair.quote.clone())
        };
        match reply::balances(t, &base, &quote) {
            Ok(balances) => {
                self.market.balances = Some(balances);
                self.make_plan()
            }
            Err(e) if reply::is_invalid_nonce(&e) => match self.retry_after_nonce(Retry::Balance) {
                Ok(step) => step,
                Err(this) => this.unavailable(format!("could not read balances: {e}")),
            },
            Err(e) => self.unavailable(format!("could not read balances: {e}")),
        }
    }

    pub(super) fn make_plan(mut self) -> Step {
        let pair = self.market.pair.clone().expect("resolved");
        let market = Market {
            pair: &pair,
            last: self.market.last,
            free_base: self.market.balances.map(|b| b.free_base),
            free_quote: self.market.balances.map(|b| b.free_quote),
            whole_base: self.market.balances.map(|b| b.whole_base),
            whole_quote: self.market.balances.map(|b| b.whole_quote),
        };
        let limits = Limits {
            max_order_value: self.cx.config.max_order_value,
            dry_run: self.cx.config.dry_run,
            reserve: self.cx.config.reserve_for(market.pair),
            position_negative: self.cx.config.position_negative,
            max_position_value: self.cx.config.max_position_value,
        };
        let planned = if self.alert.action == Action::Position {
            plan::position(&self.alert, &market, limits, &self.key).map(|p| {
                self.holding = Some(Holding {
                    position: p.position,
                    target: p.target,
                });
                p.order
            })
        } else {
            plan::plan(&self.alert, &market, limits, &self.key).map(Some)
        };
        match planned {
            Ok(None) => {
                let body = self.with_holding(json!({ "status": "in_position" }));
                let event = self.event(Level::Info, "in_position");
                self.respond(200, body, event)
            }
            Ok(Some(order)) => {
                let validate = order.validate;
                self.order = Some(order);
                if self.looks_up_first() && !validate {
                    // Kraken refuses a second open order with the same cl_ord_id itself:
                    // only the closed orders need a look-up (one REST counter point).
                    self.lookup(Stage::LookupBefore(List::Closed))
                } else {
                    self.add()
                }
            }
            Err(Reject::Unavailable { reason, .. }) => self.unavailable(reason),
            Err(reject) => self.refuse(reject),
        }
    }
}
