//! Exactly once, inside the time budget (contract 2.4 and 2.5): the state machine that takes
//! a planned order from the dedupe check to its one outcome.
//!
//! ```text
//! dedupe read, rate count, claim (claim.rs) ─ duplicate ──────────▶ 200 duplicate
//!   │                                       ─ over the limit ─────▶ 429
//!   │ owned
//! pair (cached, or AssetPairs by name), ticker (market.rs)
//!   │ [a position alert: its pair's turn across the fleet (turn.rs) ─ none in time ─▶ 503]
//! balance, plan (market.rs) ─ a position already at its target ──▶ 200 in_position
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
//! Each stage's state is a type in the stage's file: `Dedupe` and `Claim` (claim.rs),
//! `MarketData` and `PairCache` (market.rs), `Turn` (turn.rs), `Signer`, `Sending` and
//! `Known`, what is known of the order (send.rs); [`Pending`] holds what every stage needs,
//! and `Finish` the decided response with its store writes.
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
    /// Kraken refused keys for this alert: record them for `/health`.
    record_refusals: bool,
    /// A position alert's turn to give back (or, for an order whose fate is unknown, the
    /// slots to hold until its deadline): before anything else after the answer.
    turn: std::collections::VecDeque<StoreOp>,
    /// The answer, once the adapter has sent it ([`Step::Answer`]): the store writes that
    /// follow it cannot delay or change it.
    answered: Option<Done>,
}

/// The state store this request works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// None: the portable build (every order is looked up on Kraken first).
    None,
    /// A store without atomic operations (Spin before 3.1, or one that answered
    /// `Unsupported`): a write-and-read-back claim, and a look-up before every order.
    Plain,
    /// A store with `wasi:keyvalue/atomics`: the atomic claim, and the turns of position
    /// alerts.
    Atomic,
}

impl Store {
    fn present(self) -> bool {
        self != Store::None
    }

    fn atomic(self) -> bool {
        self == Store::Atomic
    }

    /// The store answered an atomic operation `Unsupported`.
    fn lose_atomics(&mut self) {
        if *self == Store::Atomic {
            *self = Store::Plain;
        }
    }
}

mod claim;
mod market;
mod send;
mod turn;

use claim::{Claim, Dedupe};
use market::{MarketData, PairCache};
use send::{Sending, Signer};
use turn::Turn;

/// Where a position alert's holding was and where it is going (contract 2.6: the answer
/// and the audit line carry both).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holding {
    position: Decimal,
    target: Decimal,
}

/// A planned order on its way to one outcome. What every stage needs is here; what only
/// some stages need is in the state of the stage that owns it, each in its stage's file:
/// the claim's in [`Dedupe`] (claim.rs), the market data's in [`MarketData`] (market.rs),
/// the turn of a position alert in [`Turn`] (turn.rs), the sending's in [`Signer`] and
/// [`Sending`] (send.rs), and the decided response's in [`Finish`].
#[derive(Debug)]
pub struct Pending {
    cx: Cx,
    alert: Alert,
    credential: Credential,
    key: DedupeKey,
    cl_ord_id: String,
    /// When the request arrived: the budget runs from here.
    started: Now,
    stage: Stage,
    store: Store,
    /// The dedupe record, the claim and the rate count.
    dedupe: Dedupe,
    /// The pair, the last trade and the balances, as far as fetched.
    market: MarketData,
    /// A position alert's turn for its pair.
    turn: Turn,
    /// The planned order, once the market data is in.
    order: Option<OrderPlan>,
    /// A position alert's holding and target, once planned.
    holding: Option<Holding>,
    /// Which Kraken key signs, and the keys Kraken refused.
    signer: Signer,
    /// The AddOrders sent and what is known of the order.
    sending: Sending,
    /// The response, once decided, with the store writes that follow it.
    finish: Option<Finish>,
}

impl Pending {
    /// Starts the machine for a planned order.
    pub(crate) fn start(cx: Cx, alert: Alert, credential: Credential, key: DedupeKey) -> Step {
        let now = cx.host.now;
        let store = match cx.host.state_store {
            Some(_) => Store::Atomic,
            None => Store::None,
        };
        let cl_ord_id = key.cl_ord_id();
        let p = Pending {
            signer: Signer::new(cx.config.kraken_key_for(&cl_ord_id)),
            dedupe: Dedupe::new(key.store_keys(now.secs(), cx.config.dedupe_window_seconds)),
            cx,
            alert,
            credential,
            cl_ord_id,
            key,
            started: now,
            stage: Stage::DedupeRead(0),
            store,
            market: MarketData::default(),
            turn: Turn::None,
            order: None,
            holding: None,
            sending: Sending::default(),
            finish: None,
        };
        if store.present() {
            p.dedupe_read(0)
        } else {
            p.prepare()
        }
    }

    /// The answer, once sent.
    fn answered(&self) -> Option<&Done> {
        self.finish.as_ref().and_then(|f| f.answered.as_ref())
    }

    /// Resumes with what the adapter's operation returned; `now` is the clock after it.
    pub fn resume(mut self: Box<Self>, input: Input, now: Now) -> Step {
        self.cx.host.now = now;
        if let Some(done) = self.answered() {
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
        if self.answered().is_some() {
            return StoreLimit {
                deadline_ms: now + AFTER_ANSWER_STORE_MS,
                on_late: None,
            };
        }
        match &self.dedupe.claim {
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
                    key: self.dedupe.record_key.clone(),
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
        let Some((api_key, api_secret)) = c.kraken_key(self.signer.key) else {
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
            .with("attempts", self.sending.attempts);
        if self.cx.config.kraken_key_count() > 1 {
            e = e.with("signer", self.signer.key + 1);
        }
        if !self.signer.refused.is_empty() {
            e = e.with("signers_refused", self.signer.refused.clone());
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
        if write && self.store.present() {
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
        if self.store.present() {
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
        let turn = self.turn_after_answer(status);
        let record_refusals = self.store.present() && !self.signer.refused.is_empty();
        let mut ops: std::collections::VecDeque<StoreOp> = ops.into();
        match std::mem::replace(&mut self.market.cache, PairCache::Unchanged) {
            PairCache::Unchanged => {}
            PairCache::Write(write) => ops.push_back(write),
            PairCache::Forget => ops.push_back(StoreOp::Delete(self.pair_key())),
        }
        self.finish = Some(Finish {
            status,
            response,
            events,
            ops,
            record: None,
            prune,
            forget: Vec::new(),
            record_refusals,
            turn: turn.into(),
            answered: None,
        });
    }
}
