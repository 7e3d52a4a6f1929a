//! Exactly once, inside the time budget (contract 2.4 and 2.5): the state machine that takes
//! a planned order from the dedupe check to its one outcome.
//!
//! ```text
//! dedupe read, rate count, claim (claim.rs) ─ duplicate ──────────▶ 200 duplicate
//!   │                                       ─ over the limit ─────▶ 429
//!   │ owned
//! pair (cached, or AssetPairs by name), ticker, balance, plan (market.rs)
//!   │
//! [look-up first: no store, a failing store, a stale claim, a forgotten key] (send.rs)
//!   │  ClosedOrders by cl_ord_id ─ found ─────────────────────────▶ 200 duplicate
//!   ▼ absent
//! AddOrder ─ txid ─────────▶ 200 placed       ─ EOrder:* ───────▶ 422 order_rejected
//!   │ ─ invalid nonce (clean) ─▶ wait jitter, AddOrder again
//!   │ ─ EOrder:Duplicate order ─▶ OpenOrders by cl_ord_id ─▶ 200 duplicate
//!   │ ─ rate limit / unreachable ─▶ 503 retry-after (claim released, the resend trades)
//!   │ ─ time-out, 5xx, EService:*, internal error
//!   ▼
//! look-up OpenOrders, ClosedOrders by cl_ord_id ─ found ─▶ 200 placed
//!   │ absent and certainly absent (deadline elapsed), once ─▶ AddOrder again
//!   └ otherwise ─────────────────────────────────────────▶ 202 pending + order_pending
//! ```
//!
//! Every outcome is recorded under the dedupe key, so a resend replays it; every Kraken call
//! carries a time-out from what is left of the budget, and a request that could still have
//! placed an order never answers 5xx.

use crate::alert::Alert;
use crate::audit::Event;
use crate::audit::Level;
use crate::auth::Credential;
use crate::bridge::{Cx, Done, Input, Step};
use crate::idempotency::{DedupeKey, Record, RecordState, CLAIM_WINDOW_MS};
use crate::kraken::pairs::Pair;
use crate::kraken::reply::{self, AddOrder, Transport};
use crate::kraken::request::{private_call, public_call, Credentials};
use crate::plan::OrderPlan;
use crate::reject::Reject;
use crate::response::Response;
use crate::store::{StoreLimit, StoreOp, StoreReply};
use crate::time::Now;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// The whole request ends inside this many milliseconds (TradingView cancels at 3 s).
pub const BUDGET_MS: u64 = 2_500;
/// Kept back for writing the record and the response after the last Kraken call.
pub const RESPONSE_MARGIN_MS: u64 = 250;
/// No Kraken call is started with less time left than this.
pub const MIN_CALL_MS: u64 = 150;
/// The AddOrder `deadline`, ahead of the host clock (Kraken accepts 2 to 60 s; the margin
/// above 2 s absorbs clock skew).
pub const ORDER_DEADLINE_MS: u64 = 5_000;
/// Calls refused for a stale nonce are retried up to this many times in all, as long as the
/// budget allows (contract 2.4: concurrent requests reach Kraken out of order).
pub const MAX_NONCE_RETRIES: u8 = 24;
/// Where a symbol's pair is cached in the state store: one small entry per symbol (its
/// [`pairs::lookup_name`]), so an alert never reads or parses Kraken's whole list.
pub const PAIR_KEY_PREFIX: &str = "kraken:pair:";
/// How long a store read between the claim and the answer may take (the cached pair).
pub const STORE_READ_MS: u64 = 300;
/// How long each store write after the answer may take.
pub const AFTER_ANSWER_STORE_MS: u64 = 1_000;
/// How long a cached pair is used before it is fetched again.
pub const PAIRS_TTL_SECS: u64 = 3_600;

/// A symbol's cached pair.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedPair {
    fetched_at: u64,
    pair: Pair,
}

/// Which order list a look-up reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Open,
    Closed,
}

impl List {
    fn method(self) -> &'static str {
        match self {
            List::Open => "OpenOrders",
            List::Closed => "ClosedOrders",
        }
    }

    fn key(self) -> &'static str {
        match self {
            List::Open => "open",
            List::Closed => "closed",
        }
    }
}

/// Where the machine waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    DedupeRead(usize),
    ForgottenRead(usize),
    Takeover,
    TakeoverVerify,
    RateCount,
    RateRead,
    RateWrite,
    Tentative,
    ClaimCount(usize),
    LostRead,
    ClaimVerify,
    Cancel,
    Turn,
    PairsRead,
    PairsFetch,
    Ticker,
    Balance,
    LookupBefore(List),
    Add,
    Wait(Retry),
    LookupAfter(List),
    Answered,
    Finishing,
    RecordCheck,
    ReleaseRead,
    PruneLease,
    PruneKeys,
    ForgetRead,
    RefusedRead,
}

/// The call a [`Stage::Wait`] repeats: one Kraken refused for a stale nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Add,
    LookupBefore(List),
    LookupAfter(List),
    Balance,
    Turn,
}

/// A response decided, with the store writes still to make.
#[derive(Debug)]
struct Finish {
    status: u16,
    response: Response,
    events: Vec<Event>,
    ops: std::collections::VecDeque<StoreOp>,
    /// The outcome record to write, unless another delivery has already recorded one.
    record: Option<Vec<u8>>,
    prune: bool,
    /// The pruning pass planned from the key listing, while its filters are written.
    forget: Vec<(String, Vec<(String, String)>)>,
}

/// How this delivery stands towards the alert's dedupe record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    /// No claim (yet, or none possible: no store, or the store failed).
    None,
    /// The in-flight record was written but the alert is not owned yet: its bytes.
    Written(Vec<u8>),
    /// This delivery owns the alert (a `503` releases whatever record the store then holds).
    Owned,
}

mod claim;
mod market;
mod send;
mod turn;

use turn::Turn;

/// Where a position alert's holding was and where it is going (contract 2.6: the answer
/// and the audit line carry both).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holding {
    position: Decimal,
    target: Decimal,
}

/// A planned order on its way to one outcome.
#[derive(Debug)]
pub struct Pending {
    cx: Cx,
    alert: Alert,
    /// The planned order, once the market data is in.
    order: Option<OrderPlan>,
    /// A position alert's holding and target, once planned.
    holding: Option<Holding>,
    /// A position alert's turn for its pair.
    turn: Turn,
    credential: Credential,
    /// Which Kraken key signs this alert's calls ([`crate::config::Config::kraken_key_for`]).
    kraken_key: usize,
    /// The keys Kraken refused for this alert (numbered from 1), each passed over for the next.
    refused_signers: Vec<usize>,
    /// Whether those refusals are still to be recorded for `/health` (after the answer).
    refusals_to_record: bool,
    key: DedupeKey,
    cl_ord_id: String,
    store_keys: [String; 2],
    /// Where this delivery's record lives: the current bucket, or the bucket of a stale
    /// record it took over.
    record_key: String,
    /// A stale or released record found by the dedupe read, for the takeover swap.
    found: Option<Vec<u8>>,
    /// The resolved pair and what was fetched for the plan.
    pair: Option<Pair>,
    last: Option<Decimal>,
    balances: Option<crate::kraken::reply::Balances>,
    /// The `pair` values to ask `AssetPairs` for before the whole list.
    pair_queries: Vec<String>,
    /// Which of them is asked now (`pair_queries.len()`: the whole list).
    pair_query: usize,
    /// A pair fetched from Kraken in this request, cached once the answer has gone.
    cache_write: Option<StoreOp>,
    /// Kraken did not know the pair: forget the cached one.
    drop_pairs_cache: bool,
    /// Kraken refused the AddOrder as a duplicate `cl_ord_id`: the order exists.
    duplicate_refused: bool,
    stage: Stage,
    /// When the request arrived: the budget runs from here.
    started: Now,
    /// The flavour has a state store (a failing one answers 503 before the claim).
    has_store: bool,
    /// The store has atomic operations (`false` once it answers `Unsupported`).
    atomics: bool,
    /// Look the order up on Kraken before sending it.
    lookup_first: bool,
    claim: Claim,
    /// After a `503`: release the in-flight record, whoever wrote it last.
    release_in_flight: bool,
    /// This minute's count of alerts after this one was counted (0: not counted).
    rate_count: i64,
    /// The store refused a write before the claim (a full key cap, most likely): prune
    /// after the answer whatever the count, or a full store would never make room.
    store_refused: bool,
    attempts: u8,
    /// Calls repeated after a stale-nonce refusal.
    nonce_retries: u8,
    /// An earlier AddOrder's outcome is unknown: the order may exist.
    ambiguous: bool,
    /// The one resend after a certain absence was used.
    resent: bool,
    /// Kraken said `EService:Deadline elapsed`: the engine refused the late order.
    deadline_elapsed: bool,
    /// The last AddOrder's `deadline`, on the host clock.
    order_deadline: Option<Now>,
    finish: Option<Finish>,
    /// The answer, once the adapter has sent it ([`Step::Answer`]): the store writes that
    /// follow it cannot delay or change it.
    answered: Option<Done>,
}

impl Pending {
    /// Starts the machine for a planned order.
    pub(crate) fn start(cx: Cx, alert: Alert, credential: Credential, key: DedupeKey) -> Step {
        let now = cx.host.now;
        let store_keys = key.store_keys(now.secs(), cx.config.dedupe_window_seconds);
        let has_store = cx.host.state_store.is_some();
        let cl_ord_id = key.cl_ord_id();
        let p = Pending {
            kraken_key: cx.config.kraken_key_for(&cl_ord_id),
            refused_signers: Vec::new(),
            refusals_to_record: false,
            cx,
            alert,
            order: None,
            holding: None,
            turn: Turn::None,
            credential,
            cl_ord_id,
            key,
            record_key: store_keys[0].clone(),
            store_keys,
            found: None,
            pair: None,
            last: None,
            balances: None,
            pair_queries: Vec::new(),
            pair_query: 0,
            cache_write: None,
            drop_pairs_cache: false,
            duplicate_refused: false,
            stage: Stage::DedupeRead(0),
            started: now,
            has_store,
            atomics: has_store,
            lookup_first: !has_store,
            claim: Claim::None,
            release_in_flight: false,
            rate_count: 0,
            store_refused: false,
            attempts: 0,
            nonce_retries: 0,
            ambiguous: false,
            resent: false,
            deadline_elapsed: false,
            order_deadline: None,
            finish: None,
            answered: None,
        };
        if has_store {
            p.dedupe_read(0)
        } else {
            p.prepare()
        }
    }

    /// Resumes with what the adapter's operation returned; `now` is the clock after it.
    pub fn resume(mut self: Box<Self>, input: Input, now: Now) -> Step {
        self.cx.host.now = now;
        if let Some(done) = &self.answered {
            // After the answer, a store that does not answer gets no more writes (each
            // would wait its whole limit): the next alert's pruning catches up. One that
            // refuses a write (a full key cap) still gets the rest, deletions among them.
            if matches!(input, Input::Store(StoreReply::NoAnswer(_))) {
                return Step::Done(done.clone());
            }
        }
        match (self.stage, input) {
            (Stage::Answered, Input::Answered) => self.next_op(),
            (Stage::DedupeRead(i), Input::Store(reply)) => self.on_dedupe_read(i, reply),
            (Stage::ForgottenRead(i), Input::Store(reply)) => self.on_forgotten_read(i, reply),
            (Stage::Takeover, Input::Store(reply)) => self.on_takeover(reply),
            (Stage::TakeoverVerify, Input::Store(reply)) => self.on_takeover_verify(reply),
            (Stage::RateCount, Input::Store(reply)) => self.on_rate_count(reply),
            (Stage::RateRead, Input::Store(reply)) => self.on_rate_read(reply),
            (Stage::RateWrite, Input::Store(_)) => self.write_claim(),
            (Stage::Tentative, Input::Store(reply)) => self.on_tentative(reply),
            (Stage::ClaimCount(i), Input::Store(reply)) => self.on_claim_count(i, reply),
            (Stage::LostRead, Input::Store(reply)) => self.on_lost_read(reply),
            (Stage::ClaimVerify, Input::Store(reply)) => self.on_claim_verify(reply),
            (Stage::Cancel, Input::Kraken(t)) => self.on_cancel(&t),
            (Stage::Turn, Input::Store(reply)) => self.on_turn(reply),
            (Stage::PairsRead, Input::Store(reply)) => self.on_pairs_read(reply),
            (Stage::PairsFetch, Input::Kraken(t)) => self.on_pairs_fetch(&t),
            (Stage::Ticker, Input::Kraken(t)) => self.on_ticker(&t),
            (Stage::Balance, Input::Kraken(t)) => self.on_balance(&t),
            (Stage::LookupBefore(list), Input::Kraken(t)) => self.on_lookup_before(list, &t),
            (Stage::Add, Input::Kraken(t)) => self.on_add(&t),
            (Stage::Wait(retry), Input::Waited) => match retry {
                Retry::Add => self.add(),
                Retry::LookupBefore(l) => self.lookup(Stage::LookupBefore(l)),
                Retry::LookupAfter(l) => self.lookup(Stage::LookupAfter(l)),
                Retry::Balance => self.after_ticker(),
                Retry::Turn => self.take_turn(),
            },
            (Stage::LookupAfter(list), Input::Kraken(t)) => self.on_lookup_after(list, &t),
            (Stage::Finishing, Input::Store(_)) => self.next_op(),
            (Stage::RecordCheck, Input::Store(reply)) => self.on_record_check(reply),
            (Stage::ReleaseRead, Input::Store(reply)) => self.on_release_read(reply),
            (Stage::PruneLease, Input::Store(reply)) => self.on_prune_lease(reply),
            (Stage::PruneKeys, Input::Store(reply)) => self.on_prune_keys(reply),
            (Stage::ForgetRead, Input::Store(reply)) => self.on_forget_read(reply),
            (Stage::RefusedRead, Input::Store(reply)) => self.on_refused_read(reply),
            (stage, input) => unreachable!("{stage:?} cannot take {input:?}"),
        }
    }

    /// How long the store operation this machine waits for may take. Until the alert is
    /// owned, every operation ends by the claim window, past which the claim would not
    /// count anyway, and a late write of this delivery's claim is released by the store
    /// component; after that, a read before the answer waits [`STORE_READ_MS`] (a miss
    /// costs a Kraken call, nothing more), and a write after it [`AFTER_ANSWER_STORE_MS`].
    pub fn store_limit(&self) -> StoreLimit {
        let now = self.cx.host.now.millis();
        if self.answered.is_some() {
            return StoreLimit {
                deadline_ms: now + AFTER_ANSWER_STORE_MS,
                on_late: None,
            };
        }
        match &self.claim {
            Claim::Owned => StoreLimit {
                deadline_ms: now + STORE_READ_MS.min(self.remaining_ms()),
                // A turn counter incremented too late would block the pair: undone.
                on_late: self
                    .turn
                    .in_flight()
                    .filter(|_| self.stage == Stage::Turn)
                    .map(|key| StoreOp::Increment(key.clone(), -1)),
            },
            Claim::None => StoreLimit {
                deadline_ms: self.started.millis() + CLAIM_WINDOW_MS,
                on_late: None,
            },
            Claim::Written(mine) => StoreLimit {
                deadline_ms: self.started.millis() + CLAIM_WINDOW_MS,
                on_late: claim::released(mine).map(|new| StoreOp::Swap {
                    key: self.record_key.clone(),
                    expected: mine.clone(),
                    new,
                }),
            },
        }
    }

    fn store(mut self, stage: Stage, op: StoreOp) -> Step {
        self.stage = stage;
        Step::Store(op, Box::new(self))
    }

    // ---- Kraken ------------------------------------------------------------------------

    /// Milliseconds since the request arrived.
    fn spent_ms(&self) -> u64 {
        self.cx
            .host
            .now
            .millis()
            .saturating_sub(self.started.millis())
    }

    /// Milliseconds left for Kraken calls.
    fn remaining_ms(&self) -> u64 {
        (BUDGET_MS - RESPONSE_MARGIN_MS).saturating_sub(self.spent_ms())
    }

    fn public(mut self, stage: Stage, method: &'static str, query: &[(&str, String)]) -> Step {
        let remaining = self.remaining_ms();
        if remaining < MIN_CALL_MS {
            return self.out_of_time();
        }
        let mut call = public_call(&self.cx.config.kraken_api_url, method, query);
        call.timeout_ms = remaining;
        self.stage = stage;
        Step::Call(call, Box::new(self))
    }

    fn call(mut self, stage: Stage, method: &'static str, params: &[(&str, String)]) -> Step {
        let remaining = self.remaining_ms();
        if remaining < MIN_CALL_MS {
            return self.out_of_time();
        }
        let c = &self.cx.config;
        let Some((api_key, api_secret)) = c.kraken_key(self.kraken_key) else {
            // Unreachable while the configuration is usable; refuse rather than panic.
            return self.cx.reject(Reject::Misconfigured, None);
        };
        let creds = Credentials {
            api_key,
            api_secret,
            otp: c.kraken_otp.as_ref(),
        };
        // The nonce is the host clock in microseconds, strictly increasing per instance.
        let nonce = self.cx.host.now.0;
        match private_call(&c.kraken_api_url, method, params, nonce, creds) {
            Ok(mut call) => {
                call.timeout_ms = remaining;
                self.stage = stage;
                Step::Call(call, Box::new(self))
            }
            Err(_) => self.cx.reject(Reject::Misconfigured, None),
        }
    }

    fn on_cancel(self, t: &Transport) -> Step {
        match reply::cancel_all(t) {
            AddOrder::Placed { description, .. } => {
                let count: u64 = description.parse().unwrap_or(0);
                let body = json!({ "status": "cancelled", "count": count });
                let event = self
                    .event(Level::Info, "orders_cancelled")
                    .with("count", count);
                self.respond(200, body, event)
            }
            AddOrder::Rejected { error } => {
                let event = self
                    .event(Level::Warn, "order_rejected")
                    .with("kraken_error", error.clone());
                self.reject_recorded(
                    Reject::OrderRejected {
                        kraken_error: error,
                    },
                    event,
                )
            }
            AddOrder::Transient { error }
            | AddOrder::Ambiguous { reason: error }
            | AddOrder::Validated { description: error } => {
                // Cancelling again is harmless: worth a resend.
                self.unavailable(error)
            }
        }
    }

    /// A refusal decided before Kraken saw an order: recorded, with `alert_rejected`.
    fn refuse(self, reject: Reject) -> Step {
        let event = self
            .event(Level::Warn, "alert_rejected")
            .with("status", reject.status())
            .with("error", reject.code())
            .with("reason", reject.detail());
        self.reject_recorded(reject, event)
    }

    // ---- outcomes ----------------------------------------------------------------------

    fn event(&self, level: Level, name: &'static str) -> Event {
        let mut e = Event::new(level, name)
            .with("cl_ord_id", self.cl_ord_id.clone())
            .with("auth", self.credential.as_str())
            .with("attempts", self.attempts);
        if self.cx.config.kraken_key_count() > 1 {
            e = e.with("signer", self.kraken_key + 1);
        }
        if !self.refused_signers.is_empty() {
            e = e.with("signers_refused", self.refused_signers.clone());
        }
        match &self.order {
            Some(order) => {
                e = e
                    .with("pair", order.pair.clone())
                    .with("side", order.side.as_str())
                    .with("order_type", order.order_type.as_str())
                    .with("volume", order.volume.clone())
                    .with("validate", order.validate);
                if let Some(p) = &order.price {
                    e = e.with("price", p.clone());
                }
                if let Some(p) = &order.price2 {
                    e = e.with("price2", p.clone());
                }
            }
            None => {
                e = e.with("action", self.alert.action.as_str());
                if let Some(s) = &self.alert.symbol {
                    e = e.with("symbol", s.clone());
                }
            }
        }
        if let Some(h) = &self.holding {
            e = e
                .with("position", h.position.to_string())
                .with("target", h.target.to_string());
        }
        if let Some(id) = &self.alert.id {
            e = e.with("alert_id", id.clone());
        }
        if let Some(c) = &self.alert.comment {
            e = e.with("comment", c.clone());
        }
        e
    }

    /// `200 placed`: the order exists on Kraken.
    fn placed_body(&self, txid: Vec<String>, description: String) -> Value {
        let body = json!({
            "status": "placed",
            "txid": txid,
            "description": description,
            "cl_ord_id": self.cl_ord_id,
        });
        self.with_holding(body)
    }

    /// A position alert's answer names the holding before and the target (contract 2.6).
    fn with_holding(&self, mut body: Value) -> Value {
        if let (Some(h), Some(map)) = (&self.holding, body.as_object_mut()) {
            map.insert("position".into(), h.position.to_string().into());
            map.insert("target".into(), h.target.to_string().into());
        }
        body
    }

    fn record(&self, status: u16, body: &Value) -> Record {
        Record {
            state: RecordState::Done,
            first_seen: self.started.secs(),
            cl_ord_id: self.cl_ord_id.clone(),
            status,
            body: body.clone(),
            owner: self.cx.host.request_id.clone(),
            claimed_at: self.started.secs(),
        }
    }

    /// `200 duplicate`, replaying the first outcome; `write` records it when it came from a
    /// Kraken look-up rather than from the store.
    fn duplicate(mut self, first: &Record, write: bool) -> Step {
        let body = first.duplicate_body();
        let event = self
            .event(Level::Info, "alert_duplicate")
            .with("outcome", body["outcome"].clone());
        let response = Response::json(200, &body, &self.cx.host.request_id);
        self.finish_with(200, response, vec![event], Vec::new());
        if write && self.has_store {
            self.finish.as_mut().expect("finishing").record = Some(first.encode());
        }
        self.next_op()
    }

    fn pending(self, reason: &str) -> Step {
        let body = self.with_holding(json!({ "status": "pending", "cl_ord_id": self.cl_ord_id }));
        let event = self
            .event(Level::Error, "order_pending")
            .with("reason", reason.to_string());
        self.respond(202, body, event)
    }

    /// `503` with `retry-after`: nothing was placed and a resend is worthwhile, so the claim
    /// is dropped.
    fn unavailable(mut self, error: String) -> Step {
        let event = self
            .event(Level::Warn, "order_rejected")
            .with("kraken_error", error.clone())
            .with("retryable", true);
        let reject = Reject::Unavailable {
            retry_after: 5,
            reason: error,
        };
        let response = Response::reject(
            &reject,
            self.cx.config.environment,
            &self.cx.host.request_id,
        );
        let release = self.release_ops();
        self.finish_with(reject.status(), response, vec![event], release);
        self.next_op()
    }

    fn reject_recorded(self, reject: Reject, event: Event) -> Step {
        let response = Response::reject(
            &reject,
            self.cx.config.environment,
            &self.cx.host.request_id,
        );
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        self.conclude(reject.status(), response, body, event)
    }

    fn respond(self, status: u16, body: Value, event: Event) -> Step {
        let response = Response::json(status, &body, &self.cx.host.request_id);
        self.conclude(status, response, body, event)
    }

    /// A final outcome: record it under the dedupe key, then answer.
    fn conclude(mut self, status: u16, response: Response, body: Value, event: Event) -> Step {
        let record = self.record(status, &body);
        self.finish_with(status, response, vec![event], Vec::new());
        if self.has_store {
            self.finish.as_mut().expect("finishing").record = Some(record.encode());
        }
        self.next_op()
    }

    fn finish_with(
        &mut self,
        status: u16,
        response: Response,
        events: Vec<Event>,
        ops: Vec<StoreOp>,
    ) {
        let prune = self.prunes();
        // The pair's turn goes back first, so that the next position alert need not wait
        // for this one's record. An order whose fate is still unknown (202) keeps it, and
        // takes every slot up to its Kraken deadline, so that no position alert reads a
        // balance the order may still change.
        let mut turn_ops = std::mem::replace(&mut self.turn, Turn::None).release();
        if status == 202 && !turn_ops.is_empty() {
            let pair = self.pair.as_ref().map(|p| p.id.clone()).unwrap_or_default();
            let until = self.order_deadline.map_or(0, |d| d.millis());
            let now = self.cx.host.now.millis();
            let held: Vec<String> = turn_ops
                .iter()
                .filter_map(|op| match op {
                    StoreOp::Increment(k, _) => Some(k.clone()),
                    _ => None,
                })
                .collect();
            turn_ops = crate::turn::keys(now, until, self.cx.config.account.as_deref(), &pair)
                .into_iter()
                .filter(|k| !held.contains(k))
                .map(|k| StoreOp::Increment(k, 1))
                .collect();
        }
        self.refusals_to_record = self.has_store && !self.refused_signers.is_empty();
        let mut ops: std::collections::VecDeque<StoreOp> =
            turn_ops.into_iter().chain(ops).collect();
        if self.drop_pairs_cache {
            ops.push_back(StoreOp::Delete(self.pair_key()));
        } else if let Some(write) = self.cache_write.take() {
            ops.push_back(write);
        }
        self.finish = Some(Finish {
            status,
            response,
            events,
            ops,
            record: None,
            prune,
            forget: Vec::new(),
        });
    }
}
