//! Exactly once, inside the time budget (contract 2.4 and 2.5): the state machine that takes
//! a planned order from the dedupe check to its one outcome.
//!
//! ```text
//! dedupe read ─ hit ──────────────────────────────────────────────▶ 200 duplicate
//!   │ miss
//! rate count ─ over ──────────────────────────────────────────────▶ 429
//!   │
//! claim (in flight) ─▶ [look-up first: no store, stale claim] ─ found ▶ 200 duplicate
//!   │                                                         │ absent
//!   ▼◀────────────────────────────────────────────────────────┘
//! AddOrder ─ txid ─────────▶ 200 placed       ─ EOrder:* ───────▶ 422 order_rejected
//!   │ ─ invalid nonce (clean) ─▶ wait jitter, AddOrder again
//!   │ ─ rate limit / unreachable ─▶ 503 retry-after (claim dropped, a resend may try again)
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
use crate::auth::Credential;
use crate::bridge::{Cx, Input, Step};
use crate::config::Level;
use crate::idempotency::{DedupeKey, Record, RecordState, IN_FLIGHT_STALE_SECS};
use crate::kraken::reply::{self, AddOrder, Lookup, Transport};
use crate::kraken::request::{private_call, Credentials};
use crate::plan::OrderPlan;
use crate::reject::Reject;
use crate::response::Response;
use crate::store::{StoreOp, StoreReply};
use crate::time::Now;
use crate::{idempotency, rate_limit};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The whole request ends inside this many milliseconds (TradingView cancels at 3 s).
pub const BUDGET_MS: u64 = 2_500;
/// Kept back for writing the record and the response after the last Kraken call.
pub const RESPONSE_MARGIN_MS: u64 = 250;
/// No Kraken call is started with less time left than this.
pub const MIN_CALL_MS: u64 = 150;
/// The AddOrder `deadline`, ahead of the host clock (Kraken accepts 2 to 60 s; the margin
/// above 2 s absorbs clock skew).
pub const ORDER_DEADLINE_MS: u64 = 5_000;
/// AddOrder attempts refused for a stale nonce are retried up to this many times in all.
pub const MAX_ATTEMPTS: u8 = 4;
/// Prune the store on the first alert of each minute and every this many alerts after.
const PRUNE_EVERY: u32 = 16;

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
    RateRead,
    RateWrite,
    Claim,
    LookupBefore(List),
    Add,
    Wait,
    LookupAfter(List),
    Finishing,
    PruneKeys,
}

/// A response decided, with the store writes still to make.
#[derive(Debug)]
struct Finish {
    status: u16,
    response: Response,
    events: Vec<Event>,
    ops: std::collections::VecDeque<StoreOp>,
    prune: bool,
}

/// A planned order on its way to one outcome.
#[derive(Debug)]
pub struct Pending {
    cx: Cx,
    alert: Alert,
    order: OrderPlan,
    credential: Credential,
    key: DedupeKey,
    store_keys: [String; 2],
    stage: Stage,
    /// When the request arrived: the budget runs from here.
    started: Now,
    /// The store answers; `false` after a failure or when there is none.
    store_ok: bool,
    /// Look the order up on Kraken before sending it.
    lookup_first: bool,
    claimed: bool,
    rate_count: u32,
    attempts: u8,
    /// An earlier AddOrder's outcome is unknown: the order may exist.
    ambiguous: bool,
    /// The one resend after a certain absence was used.
    resent: bool,
    /// Kraken said `EService:Deadline elapsed`: the engine refused the late order.
    deadline_elapsed: bool,
    /// The last AddOrder's `deadline`, on the host clock.
    order_deadline: Option<Now>,
    finish: Option<Finish>,
}

impl Pending {
    /// Starts the machine for a planned order.
    pub(crate) fn start(
        cx: Cx,
        alert: Alert,
        order: OrderPlan,
        credential: Credential,
        key: DedupeKey,
    ) -> Step {
        let now = cx.host.now;
        let store_keys = key.store_keys(now.secs(), cx.config.dedupe_window_seconds);
        let has_store = cx.host.state_store.is_some();
        let p = Pending {
            cx,
            alert,
            order,
            credential,
            key,
            store_keys,
            stage: Stage::DedupeRead(0),
            started: now,
            store_ok: has_store,
            lookup_first: !has_store,
            claimed: false,
            rate_count: 0,
            attempts: 0,
            ambiguous: false,
            resent: false,
            deadline_elapsed: false,
            order_deadline: None,
            finish: None,
        };
        if has_store {
            let k = p.store_keys[0].clone();
            p.store(Stage::DedupeRead(0), StoreOp::Get(k))
        } else {
            p.kraken_begin()
        }
    }

    /// Resumes with what the adapter's operation returned; `now` is the clock after it.
    pub fn resume(mut self: Box<Self>, input: Input, now: Now) -> Step {
        self.cx.host.now = now;
        match (self.stage, input) {
            (Stage::DedupeRead(i), Input::Store(reply)) => self.on_dedupe_read(i, reply),
            (Stage::RateRead, Input::Store(reply)) => self.on_rate_read(reply),
            (Stage::RateWrite, Input::Store(_)) => self.claim(),
            (Stage::Claim, Input::Store(reply)) => {
                self.claimed = reply == StoreReply::Done;
                self.store_ok &= self.claimed;
                self.kraken_begin()
            }
            (Stage::LookupBefore(list), Input::Kraken(t)) => self.on_lookup_before(list, &t),
            (Stage::Add, Input::Kraken(t)) => self.on_add(&t),
            (Stage::Wait, Input::Waited) => self.add(),
            (Stage::LookupAfter(list), Input::Kraken(t)) => self.on_lookup_after(list, &t),
            (Stage::Finishing, Input::Store(_)) => self.next_op(),
            (Stage::PruneKeys, Input::Store(StoreReply::Keys(keys))) => {
                let gone = idempotency::prune(&keys, self.cx.host.now.secs());
                let f = self.finish.as_mut().expect("finishing");
                f.ops.extend(gone.into_iter().map(StoreOp::Delete));
                self.next_op()
            }
            (Stage::PruneKeys, Input::Store(_)) => self.next_op(),
            (stage, input) => unreachable!("{stage:?} cannot take {input:?}"),
        }
    }

    // ---- the state store --------------------------------------------------------------

    fn store(mut self, stage: Stage, op: StoreOp) -> Step {
        self.stage = stage;
        Step::Store(op, Box::new(self))
    }

    fn on_dedupe_read(mut self, i: usize, reply: StoreReply) -> Step {
        let now = self.cx.host.now.secs();
        let ttl = self.key.ttl(self.cx.config.dedupe_window_seconds);
        match reply {
            StoreReply::Value(Some(bytes)) => match Record::decode(&bytes) {
                Some(r) if r.is_live(now, ttl) => {
                    let stale = r.state == RecordState::InFlight
                        && now - r.first_seen > IN_FLIGHT_STALE_SECS;
                    if !stale {
                        return self.duplicate(&r, false);
                    }
                    // The request that claimed it died: ask Kraken before sending anything.
                    self.lookup_first = true;
                    self.rate_read()
                }
                _ => self.next_dedupe_read(i),
            },
            StoreReply::Value(None) => self.next_dedupe_read(i),
            _ => {
                // Without a working store, Kraken's own records are the dedupe.
                self.store_ok = false;
                self.lookup_first = true;
                self.kraken_begin()
            }
        }
    }

    fn next_dedupe_read(self, i: usize) -> Step {
        if i + 1 < self.store_keys.len() {
            let k = self.store_keys[i + 1].clone();
            self.store(Stage::DedupeRead(i + 1), StoreOp::Get(k))
        } else {
            self.rate_read()
        }
    }

    fn rate_read(self) -> Step {
        let k = rate_limit::key(self.cx.host.now.secs());
        self.store(Stage::RateRead, StoreOp::Get(k))
    }

    fn on_rate_read(mut self, reply: StoreReply) -> Step {
        let StoreReply::Value(value) = reply else {
            // The count cannot be read: the limit is not enforced for this alert.
            return self.claim();
        };
        let count = rate_limit::count(value.as_deref());
        let now = self.cx.host.now.secs();
        if count >= self.cx.config.rate_limit_per_minute {
            let retry_after = rate_limit::retry_after(now);
            let event = Event::new(Level::Warn, "rate_limited")
                .with("limit_per_minute", self.cx.config.rate_limit_per_minute);
            return self
                .cx
                .reject(Reject::RateLimited { retry_after }, Some(event));
        }
        self.rate_count = count + 1;
        let op = StoreOp::Set(
            rate_limit::key(now),
            self.rate_count.to_string().into_bytes(),
        );
        self.store(Stage::RateWrite, op)
    }

    fn claim(self) -> Step {
        let record = Record {
            state: RecordState::InFlight,
            first_seen: self.cx.host.now.secs(),
            cl_ord_id: self.order.cl_ord_id.clone(),
            status: 0,
            body: Value::Null,
        };
        let op = StoreOp::Set(self.store_keys[0].clone(), record.encode());
        self.store(Stage::Claim, op)
    }

    // ---- Kraken ------------------------------------------------------------------------

    /// Milliseconds left for Kraken calls.
    fn remaining_ms(&self) -> u64 {
        let spent = self
            .cx
            .host
            .now
            .millis()
            .saturating_sub(self.started.millis());
        (BUDGET_MS - RESPONSE_MARGIN_MS).saturating_sub(spent)
    }

    fn call(mut self, stage: Stage, method: &'static str, params: &[(&str, String)]) -> Step {
        let remaining = self.remaining_ms();
        if remaining < MIN_CALL_MS {
            return self.out_of_time();
        }
        let c = &self.cx.config;
        let (Some(api_key), Some(api_secret)) = (&c.kraken_api_key, &c.kraken_api_secret) else {
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

    fn kraken_begin(self) -> Step {
        if self.lookup_first && !self.order.validate {
            self.lookup(Stage::LookupBefore(List::Open))
        } else {
            self.add()
        }
    }

    fn lookup(self, stage: Stage) -> Step {
        let list = match stage {
            Stage::LookupBefore(l) | Stage::LookupAfter(l) => l,
            _ => unreachable!("not a look-up stage"),
        };
        let params = [("cl_ord_id", self.order.cl_ord_id.clone())];
        self.call(stage, list.method(), &params)
    }

    fn on_lookup_before(self, list: List, t: &Transport) -> Step {
        match reply::find_order(t, list.key(), &self.order.cl_ord_id) {
            Lookup::Found {
                txid, description, ..
            } => {
                let body = json!({
                    "status": "placed",
                    "txid": [txid],
                    "description": description,
                    "cl_ord_id": self.order.cl_ord_id,
                });
                let record = self.record(200, &body);
                self.duplicate(&record, true)
            }
            Lookup::Absent if list == List::Open => self.lookup(Stage::LookupBefore(List::Closed)),
            Lookup::Absent => self.add(),
            Lookup::Failed(reason) => {
                // Nothing was sent: a resend later is safe and worthwhile.
                self.unavailable(format!("look-up before sending failed: {reason}"))
            }
        }
    }

    fn add(mut self) -> Step {
        self.attempts += 1;
        let deadline = Now(self.cx.host.now.0 + ORDER_DEADLINE_MS * 1_000);
        self.order_deadline = Some(deadline);
        let mut params = self.order.params();
        params.push(("deadline", deadline.rfc3339()));
        self.call(Stage::Add, "AddOrder", &params)
    }

    fn on_add(mut self, t: &Transport) -> Step {
        match reply::add_order(t, self.order.validate) {
            AddOrder::Placed { txid, description } => {
                let body = json!({
                    "status": "placed",
                    "txid": txid,
                    "description": description,
                    "cl_ord_id": self.order.cl_ord_id,
                });
                let event = self.event(Level::Info, "order_placed").with("txid", txid);
                self.respond(200, body, event)
            }
            AddOrder::Validated { description } => {
                let body = json!({ "status": "validated", "description": description });
                let event = self.event(Level::Info, "order_validated");
                self.respond(200, body, event)
            }
            AddOrder::Rejected { error } => {
                let event = self
                    .event(Level::Warn, "order_rejected")
                    .with("kraken_error", error.clone());
                let reject = Reject::OrderRejected {
                    kraken_error: error,
                };
                self.reject_recorded(reject, event)
            }
            AddOrder::Transient { error } if error.starts_with("EAPI:Invalid nonce") => {
                if self.ambiguous {
                    // After an unanswered attempt, a nonce refusal can mean that attempt
                    // arrived: the order may exist.
                    self.after_ambiguity(error)
                } else if self.attempts < MAX_ATTEMPTS
                    && self.remaining_ms() >= MIN_CALL_MS + self.jitter_ms()
                {
                    let ms = self.jitter_ms();
                    self.stage = Stage::Wait;
                    Step::Wait(ms, Box::new(self))
                } else {
                    self.unavailable(error)
                }
            }
            AddOrder::Transient { error } => {
                if self.ambiguous {
                    self.after_ambiguity(error)
                } else {
                    self.unavailable(error)
                }
            }
            AddOrder::Ambiguous { reason } => self.after_ambiguity(reason),
        }
    }

    fn after_ambiguity(mut self, reason: String) -> Step {
        self.ambiguous = true;
        self.deadline_elapsed |= reason.starts_with("EService:Deadline elapsed");
        self.lookup(Stage::LookupAfter(List::Open))
    }

    fn on_lookup_after(mut self, list: List, t: &Transport) -> Step {
        match reply::find_order(t, list.key(), &self.order.cl_ord_id) {
            Lookup::Found {
                txid, description, ..
            } => {
                let body = json!({
                    "status": "placed",
                    "txid": [txid.clone()],
                    "description": description,
                    "cl_ord_id": self.order.cl_ord_id,
                });
                let event = self
                    .event(Level::Info, "order_placed")
                    .with("txid", vec![txid])
                    .with("found_by_lookup", true);
                self.respond(200, body, event)
            }
            Lookup::Absent if list == List::Open => self.lookup(Stage::LookupAfter(List::Closed)),
            Lookup::Absent => {
                let past_deadline = self
                    .order_deadline
                    .is_some_and(|d| self.cx.host.now.0 > d.0 + 1_000_000);
                if !self.resent && (self.deadline_elapsed || past_deadline) {
                    // Certainly absent: Kraken's engine can no longer accept the first one.
                    self.resent = true;
                    self.ambiguous = false;
                    self.deadline_elapsed = false;
                    self.add()
                } else {
                    self.pending("not found yet; the order may still land before its deadline")
                }
            }
            Lookup::Failed(reason) => self.pending(&format!("look-up failed: {reason}")),
        }
    }

    /// The budget ran out before the next call.
    fn out_of_time(self) -> Step {
        if self.ambiguous {
            self.pending("time budget spent before the look-up finished")
        } else {
            self.unavailable("time budget spent before Kraken answered".into())
        }
    }

    /// A per-request jitter of 10 to 40 ms, from the request id (no ambient randomness).
    fn jitter_ms(&self) -> u64 {
        let digest = Sha256::digest(format!("{}/{}", self.cx.host.request_id, self.attempts));
        10 + u64::from(digest[0]) % 31
    }

    // ---- outcomes ----------------------------------------------------------------------

    fn event(&self, level: Level, name: &'static str) -> Event {
        let order = &self.order;
        let mut e = Event::new(level, name)
            .with("pair", order.pair.clone())
            .with("side", order.side.as_str())
            .with("order_type", order.order_type.as_str())
            .with("volume", order.volume.to_plain())
            .with("cl_ord_id", order.cl_ord_id.clone())
            .with("validate", order.validate)
            .with("auth", self.credential.as_str())
            .with("attempts", self.attempts);
        if let Some(p) = order.price {
            e = e.with("price", p.to_plain());
        }
        if let Some(id) = &self.alert.id {
            e = e.with("alert_id", id.clone());
        }
        if let Some(c) = &self.alert.comment {
            e = e.with("comment", c.clone());
        }
        e
    }

    fn record(&self, status: u16, body: &Value) -> Record {
        Record {
            state: RecordState::Done,
            first_seen: self.started.secs(),
            cl_ord_id: self.order.cl_ord_id.clone(),
            status,
            body: body.clone(),
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
        let op = (write && self.store_ok)
            .then(|| StoreOp::Set(self.store_keys[0].clone(), first.encode()));
        self.finish_with(200, response, vec![event], op);
        self.next_op()
    }

    fn pending(self, reason: &str) -> Step {
        let body = json!({ "status": "pending", "cl_ord_id": self.order.cl_ord_id });
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
        let drop_claim = self
            .claimed
            .then(|| StoreOp::Delete(self.store_keys[0].clone()));
        self.finish_with(reject.status(), response, vec![event], drop_claim);
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
        let op = self
            .store_ok
            .then(|| StoreOp::Set(self.store_keys[0].clone(), record.encode()));
        self.finish_with(status, response, vec![event], op);
        self.next_op()
    }

    fn finish_with(
        &mut self,
        status: u16,
        response: Response,
        events: Vec<Event>,
        op: Option<StoreOp>,
    ) {
        let prune = self.store_ok && self.rate_count % PRUNE_EVERY == 1;
        self.finish = Some(Finish {
            status,
            response,
            events,
            ops: op.into_iter().collect(),
            prune,
        });
    }

    fn next_op(mut self) -> Step {
        let f = self.finish.as_mut().expect("finishing");
        if let Some(op) = f.ops.pop_front() {
            return self.store(Stage::Finishing, op);
        }
        if f.prune {
            f.prune = false;
            return self.store(Stage::PruneKeys, StoreOp::Keys);
        }
        let f = self.finish.take().expect("finishing");
        debug_assert_eq!(f.status, f.response.status);
        self.cx.finish(f.response, f.events)
    }
}
