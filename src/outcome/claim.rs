//! The claim: of every delivery of one alert, on any number of instances that share the
//! state store, exactly one trades (contract 2.4).
//!
//! ```text
//! read the record (this bucket, the previous one)
//!   ├ done, or in flight ─────────────────────────────────────────▶ 200 duplicate
//!   ├ released, or in flight and stale ─ swap it for our claim ─ won ─▶ trade (stale: look up first)
//!   │                                                            └ lost ─▶ 200 duplicate
//!   └ none ─▶ [forgotten-keys filters: may name it ─▶ look up first]
//!        ─▶ count the minute (increment) ─ over the limit ─────────────▶ 429
//!        ─▶ write an in-flight record ─ slower than CLAIM_WINDOW_MS ──▶ 503, released
//!        ─▶ increment the claim counters in slot order (1, or 2 near a slot's edge) ─ all 1 ─▶ trade
//!                                            └ more ─▶ read the record ─▶ 200 duplicate
//! any store failure or time-out on the way ──────────────────────▶ 503, released
//! an in-flight record whose owner's request has ended, not yet stale ─▶ 503
//! ```
//!
//! `increment` and a swap from an existing value are atomic on every store Spin ships
//! (SQLite and Redis); a swap from an absent key is not on SQLite, so a fresh key is claimed
//! with counters, never with a swap. A host without atomics answers `Unsupported`: the claim
//! then falls back to writing the record and reading it back, and every order is looked up
//! on Kraken before it is sent.

use super::{Finish, Pending, Stage};
use crate::audit::Event;
use crate::audit::Level;
use crate::idempotency::{self, Forgotten, Record, RecordState, CLAIM_WINDOW_MS};
use crate::rate_limit;
use crate::reject::Reject;
use crate::store::{StoreOp, StoreReply};

/// How this delivery stands towards the alert's dedupe record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Claim {
    /// No claim (yet, or none possible: no store, or the store failed).
    None,
    /// The in-flight record was written but the alert is not owned yet: its bytes.
    Written(Vec<u8>),
    /// This delivery owns the alert (a `503` releases whatever record the store then holds).
    Owned,
}

/// The claim stage's state: where the alert's record lives and how this delivery stands
/// towards it.
#[derive(Debug)]
pub(super) struct Dedupe {
    /// The record's keys: this bucket's and the previous bucket's.
    pub(super) store_keys: [String; 2],
    /// Where this delivery's record lives: the current bucket, or the bucket of a stale
    /// record it took over.
    pub(super) record_key: String,
    /// A stale or released record found by the dedupe read, for the takeover swap.
    pub(super) found: Option<Vec<u8>>,
    pub(super) claim: Claim,
    /// The claim itself doubts that the order is absent on Kraken: a stale claim taken
    /// over, a key a filter may have forgotten, a filter that could not be read. (A store
    /// without atomics doubts every claim: see [`Pending::looks_up_first`].)
    pub(super) in_doubt: bool,
    /// After a `503`: release the in-flight record, whoever wrote it last.
    pub(super) release_in_flight: bool,
    /// This minute's count of alerts after this one was counted (0: not counted).
    pub(super) rate_count: i64,
    /// The store refused a write before the claim (a full key cap, most likely): prune
    /// after the answer whatever the count, or a full store would never make room.
    pub(super) store_refused: bool,
}

impl Dedupe {
    pub(super) fn new(store_keys: [String; 2]) -> Dedupe {
        Dedupe {
            record_key: store_keys[0].clone(),
            store_keys,
            found: None,
            claim: Claim::None,
            in_doubt: false,
            release_in_flight: false,
            rate_count: 0,
            store_refused: false,
        }
    }
}

/// Prune the store on the first alert of each minute and every this many alerts after.
const PRUNE_EVERY: i64 = 8;

impl Pending {
    // ---- the dedupe read ---------------------------------------------------------------

    pub(super) fn dedupe_read(self, i: usize) -> Step {
        let k = self.dedupe.store_keys[i].clone();
        self.store(Stage::DedupeRead(i), StoreOp::Get(k))
    }

    pub(super) fn on_dedupe_read(mut self, i: usize, reply: StoreReply) -> Step {
        let now = self.cx.host.now.secs();
        let ttl = self.key.ttl(self.cx.config.dedupe_window_seconds);
        match reply {
            StoreReply::Value(Some(bytes)) => match Record::decode(&bytes) {
                Some(r) if r.is_live(now, ttl) => match r.state {
                    RecordState::Done => self.duplicate(&r, false),
                    // Its owner's request has ended without recording an outcome: it died,
                    // its store failed, or its claim landed too late to count. Whether it
                    // reached Kraken is known once the record is stale: until then, nothing
                    // is placed and the resend comes back.
                    RecordState::InFlight if r.is_unsettled(now) => self.unsettled(&r),
                    RecordState::InFlight if !r.is_stale(now) => self.duplicate(&r, false),
                    // The owner died (stale), or answered 503 (released): take it over.
                    RecordState::InFlight | RecordState::Released => {
                        // A dead owner may have reached Kraken: ask Kraken first.
                        self.dedupe.in_doubt |= r.state == RecordState::InFlight;
                        self.dedupe.record_key = self.dedupe.store_keys[i].clone();
                        self.dedupe.found = Some(bytes);
                        self.take_over(r)
                    }
                },
                _ => self.next_dedupe_read(i),
            },
            StoreReply::Value(None) => self.next_dedupe_read(i),
            other => self.store_failed(other),
        }
    }

    fn next_dedupe_read(self, i: usize) -> Step {
        if i + 1 < self.dedupe.store_keys.len() {
            self.dedupe_read(i + 1)
        } else {
            self.forgotten_read(0)
        }
    }

    /// A store that fails or does not answer in time before the alert is owned: nothing is
    /// placed, `503` (TradingView resends), and this delivery's claim, if it wrote one, is
    /// released after the answer (or by the store component, should the write land late).
    fn store_failed(mut self, reply: StoreReply) -> Step {
        self.dedupe.store_refused = matches!(reply, StoreReply::Failed(_));
        let why = match reply {
            StoreReply::Failed(e) | StoreReply::NoAnswer(e) => e,
            other => format!("unexpected answer {other:?}"),
        };
        self.unavailable(format!("the state store failed before the claim: {why}"))
    }

    /// An in-flight record whose owner's request has ended: `503` until it goes stale, when
    /// the resend takes it over and asks Kraken first.
    fn unsettled(self, record: &Record) -> Step {
        let now = self.cx.host.now.secs();
        let retry_after = u32::try_from(record.stale_in(now).max(1)).unwrap_or(u32::MAX);
        let event = self
            .event(Level::Warn, "order_rejected")
            .with("kraken_error", "an earlier delivery's claim is unresolved")
            .with("retryable", true);
        self.cx.reject(
            Reject::Unavailable {
                retry_after,
                reason: "an earlier delivery of this alert ended without an outcome; \
                         resend after retry-after seconds"
                    .into(),
            },
            Some(event),
        )
    }

    // ---- records forgotten under a key budget ------------------------------------------

    /// Under a key budget, records may have been deleted inside their horizon; the filters
    /// name them, and an alert a filter may name is looked up on Kraken first.
    fn forgotten_read(self, i: usize) -> Step {
        if self.cx.config.state_max_keys.is_none() {
            return self.rate_count();
        }
        let keys = self.key.forgotten_keys(
            self.cx.host.now.secs(),
            self.cx.config.dedupe_window_seconds,
        );
        match keys.get(i) {
            Some(k) => {
                let k = k.clone();
                self.store(Stage::ForgottenRead(i), StoreOp::Get(k))
            }
            None => self.rate_count(),
        }
    }

    pub(super) fn on_forgotten_read(mut self, i: usize, reply: StoreReply) -> Step {
        match reply {
            StoreReply::Value(Some(bytes)) => {
                if Forgotten::decode(&bytes).may_contain(&self.key.as_store_key()) {
                    self.dedupe.in_doubt = true;
                }
            }
            StoreReply::Value(None) => {}
            // Whether it was forgotten cannot be known: ask Kraken.
            _ => self.dedupe.in_doubt = true,
        }
        self.forgotten_read(i + 1)
    }

    // ---- taking over a stale or released claim -----------------------------------------

    fn take_over(self, old: Record) -> Step {
        let mine = Record::in_flight(
            old.first_seen,
            &self.cl_ord_id,
            &self.cx.host.request_id,
            self.cx.host.now.secs(),
        )
        .encode();
        let expected = self.dedupe.found.clone().expect("found record");
        let key = self.dedupe.record_key.clone();
        let mut this = self;
        this.dedupe.claim = Claim::Written(mine.clone());
        this.store(
            Stage::Takeover,
            StoreOp::Swap {
                key,
                expected,
                new: mine,
            },
        )
    }

    pub(super) fn on_takeover(mut self, reply: StoreReply) -> Step {
        let mine = match std::mem::replace(&mut self.dedupe.claim, Claim::None) {
            Claim::Written(bytes) => bytes,
            other => unreachable!("takeover without a record: {other:?}"),
        };
        match reply {
            StoreReply::Swapped(true) => {
                // Read it back: Spin 4.0.2 on Redis reports an aborted transaction as a
                // successful swap.
                self.dedupe.claim = Claim::Written(mine);
                let k = self.dedupe.record_key.clone();
                self.store(Stage::TakeoverVerify, StoreOp::Get(k))
            }
            // Another delivery took it over first.
            StoreReply::Swapped(false) => {
                let k = self.dedupe.record_key.clone();
                self.store(Stage::LostRead, StoreOp::Get(k))
            }
            StoreReply::Unsupported => {
                // No atomics: write the claim and read it back, and ask Kraken first.
                self.store.lose_atomics();
                self.dedupe.claim = Claim::Written(mine.clone());
                let k = self.dedupe.record_key.clone();
                self.store(Stage::Tentative, StoreOp::Set(k, mine))
            }
            other => {
                self.dedupe.claim = Claim::Written(mine);
                self.store_failed(other)
            }
        }
    }

    pub(super) fn on_takeover_verify(self, reply: StoreReply) -> Step {
        let ours = match (&self.dedupe.claim, &reply) {
            (Claim::Written(mine), StoreReply::Value(Some(now))) => mine == now,
            _ => false,
        };
        match reply {
            _ if ours => self.own_and_trade(),
            StoreReply::Value(_) => self.on_lost_read(reply),
            other => self.store_failed(other),
        }
    }

    // ---- the rate limit ----------------------------------------------------------------

    /// This minute's counter of the alert's account.
    fn rate_key(&self) -> String {
        rate_limit::key(self.cx.host.now.secs(), self.cx.config.account.as_deref())
    }

    /// Look the order up on Kraken before sending it: without atomics (or without a store)
    /// every claim is in doubt; with them, only one the claim stage doubts.
    pub(super) fn looks_up_first(&self) -> bool {
        !self.store.atomic() || self.dedupe.in_doubt
    }

    fn rate_count(self) -> Step {
        let k = self.rate_key();
        self.store(Stage::RateCount, StoreOp::Increment(k, 1))
    }

    pub(super) fn on_rate_count(mut self, reply: StoreReply) -> Step {
        match reply {
            StoreReply::Count(n) => {
                self.dedupe.rate_count = n;
                if n > i64::from(self.cx.config.rate_limit_per_minute) {
                    return self.rate_limited();
                }
                self.write_claim()
            }
            StoreReply::Unsupported => {
                self.store.lose_atomics();
                let k = self.rate_key();
                self.store(Stage::RateRead, StoreOp::Get(k))
            }
            other => self.store_failed(other),
        }
    }

    /// Without atomics: read the count and write it back (two deliveries in one instant
    /// may both count as one).
    pub(super) fn on_rate_read(mut self, reply: StoreReply) -> Step {
        let StoreReply::Value(value) = reply else {
            return self.store_failed(reply);
        };
        let count = rate_limit::count(value.as_deref());
        if count >= self.cx.config.rate_limit_per_minute {
            return self.rate_limited();
        }
        self.dedupe.rate_count = i64::from(count) + 1;
        let op = StoreOp::Set(
            self.rate_key(),
            self.dedupe.rate_count.to_string().into_bytes(),
        );
        self.store(Stage::RateWrite, op)
    }

    fn rate_limited(self) -> Step {
        let retry_after = rate_limit::retry_after(self.cx.host.now.secs());
        let event = Event::new(Level::Warn, "rate_limited")
            .with("limit_per_minute", self.cx.config.rate_limit_per_minute);
        self.cx
            .reject(Reject::RateLimited { retry_after }, Some(event))
    }

    /// The claim written is this delivery's: it trades.
    fn own_and_trade(mut self) -> Step {
        if let Claim::Written(_) = self.dedupe.claim {
            self.dedupe.claim = Claim::Owned;
        }
        self.prepare()
    }

    // ---- the claim of a fresh key ------------------------------------------------------

    fn in_flight(&self) -> Vec<u8> {
        let at = self.started.secs();
        Record::in_flight(at, &self.cl_ord_id, &self.cx.host.request_id, at).encode()
    }

    /// Writes the in-flight record before claiming, so that a delivery that loses the
    /// claim, or comes later, finds it, and so that an owner that dies leaves a record that
    /// goes stale.
    pub(super) fn write_claim(mut self) -> Step {
        let mine = self.in_flight();
        self.dedupe.claim = Claim::Written(mine.clone());
        let k = self.dedupe.record_key.clone();
        self.store(Stage::Tentative, StoreOp::Set(k, mine))
    }

    pub(super) fn on_tentative(self, reply: StoreReply) -> Step {
        if reply != StoreReply::Done {
            // The write may still land: the release after the answer covers it.
            return self.store_failed(reply);
        }
        if !self.store.atomic() {
            // Read the claim back: a delivery that wrote in the same instant leaves its own
            // owner there. Best effort only: Kraken is asked first in any case.
            let k = self.dedupe.record_key.clone();
            return self.store(Stage::ClaimVerify, StoreOp::Get(k));
        }
        match self.too_slow_to_claim() {
            Some(spent) => self.claim_too_slow(spent),
            None => self.claim_count(0),
        }
    }

    /// A claim must be written and counted within [`CLAIM_WINDOW_MS`] of the request's
    /// arrival: only then does every simultaneous delivery share a counter with this one,
    /// and only then can no counter it increments have been pruned already. A slower store
    /// places nothing: `503`, the record released, and the resend claims again.
    fn too_slow_to_claim(&self) -> Option<u64> {
        let spent = self.spent_ms();
        (spent > CLAIM_WINDOW_MS).then_some(spent)
    }

    fn claim_too_slow(self, spent: u64) -> Step {
        self.unavailable(format!(
            "the state store took {spent} ms to record the claim"
        ))
    }

    fn claim_count(self, i: usize) -> Step {
        let k = self.key.claim_keys(self.started.millis())[i].clone();
        self.store(Stage::ClaimCount(i), StoreOp::Increment(k, 1))
    }

    pub(super) fn on_claim_count(mut self, i: usize, reply: StoreReply) -> Step {
        let counters = self.key.claim_keys(self.started.millis()).len();
        match reply {
            StoreReply::Count(1) if i + 1 < counters => self.claim_count(i + 1),
            StoreReply::Count(1) => match self.too_slow_to_claim() {
                // Both counters are ours, but a late answer proves nothing (see above).
                Some(spent) => self.claim_too_slow(spent),
                None => self.own_and_trade(),
            },
            StoreReply::Count(_) => {
                // Another delivery of this alert claimed it.
                self.dedupe.claim = Claim::None;
                let k = self.dedupe.record_key.clone();
                self.store(Stage::LostRead, StoreOp::Get(k))
            }
            StoreReply::Unsupported => {
                self.store.lose_atomics();
                let k = self.dedupe.record_key.clone();
                self.store(Stage::ClaimVerify, StoreOp::Get(k))
            }
            other => self.store_failed(other),
        }
    }

    /// A delivery that lost the claim answers as a duplicate of what the record says now.
    pub(super) fn on_lost_read(mut self, reply: StoreReply) -> Step {
        self.dedupe.claim = Claim::None;
        let record = match reply {
            StoreReply::Value(Some(bytes)) => Record::decode(&bytes),
            _ => None,
        };
        let record = match record {
            Some(r) if r.state == RecordState::Done => r,
            _ => Record::in_flight(self.started.secs(), &self.cl_ord_id, "", 0),
        };
        self.duplicate(&record, false)
    }

    /// Without atomics: the record read back names this delivery, or another one won.
    pub(super) fn on_claim_verify(mut self, reply: StoreReply) -> Step {
        match reply {
            StoreReply::Value(Some(bytes)) => match Record::decode(&bytes) {
                Some(r) if r.owner != self.cx.host.request_id => {
                    self.dedupe.claim = Claim::None;
                    self.duplicate(&r, false)
                }
                _ => self.own_and_trade(),
            },
            other => self.store_failed(other),
        }
    }

    // ---- after the answer is decided ---------------------------------------------------

    /// The store operations that give up this delivery's claim after a `503`: the record
    /// becomes `released` (atomically, and only while it is in flight), so the resend takes
    /// it over at once. An owner releases whatever in-flight record is there (a delivery that
    /// lost the claim may have overwritten its own); a delivery that wrote its record but
    /// never owned the alert releases only its own bytes.
    pub(super) fn release_ops(&mut self) -> Vec<StoreOp> {
        if !self.store.present() {
            return Vec::new();
        }
        match &self.dedupe.claim {
            Claim::None => Vec::new(),
            _ if !self.store.atomic() => vec![StoreOp::Delete(self.dedupe.record_key.clone())],
            Claim::Owned => {
                self.dedupe.release_in_flight = true;
                Vec::new()
            }
            Claim::Written(mine) => released(mine)
                .map(|new| StoreOp::Swap {
                    key: self.dedupe.record_key.clone(),
                    expected: mine.clone(),
                    new,
                })
                .into_iter()
                .collect(),
        }
    }

    pub(super) fn on_release_read(mut self, reply: StoreReply) -> Step {
        if let StoreReply::Value(Some(current)) = reply {
            if let Some(new) = released(&current) {
                let key = self.dedupe.record_key.clone();
                self.finishing().ops.push_front(StoreOp::Swap {
                    key,
                    expected: current,
                    new,
                });
            }
        }
        self.next_op()
    }

    /// Whether this answer prunes the store: on the first alert of each minute and every
    /// [`PRUNE_EVERY`] after, and after any refused write (a store whose key cap is full
    /// refuses even the minute's new count, so counting alone would never prune it again).
    pub(super) fn prunes(&self) -> bool {
        self.store.present()
            && (self.dedupe.rate_count % PRUNE_EVERY == 1 || self.dedupe.store_refused)
    }

    pub(super) fn on_record_check(mut self, reply: StoreReply) -> Step {
        // The first recorded outcome stands.
        let recorded = matches!(&reply, StoreReply::Value(Some(bytes))
            if Record::decode(bytes).is_some_and(|r| r.state == RecordState::Done));
        let key = self.dedupe.record_key.clone();
        let f = self.finishing();
        if let Some(record) = f.record.take() {
            if !recorded {
                f.ops.push_front(StoreOp::Set(key, record));
            }
        }
        self.next_op()
    }

    fn finishing(&mut self) -> &mut Finish {
        self.finish.as_mut().expect("finishing")
    }

    /// Answers, then runs the remaining store writes and the pruning pass.
    pub(super) fn next_op(mut self) -> Step {
        if self.answered().is_none() {
            let f = self.finishing();
            debug_assert_eq!(f.status, f.response.status);
            let after = f.record.is_some()
                || !f.ops.is_empty()
                || !f.forget.is_empty()
                || f.prune
                || !f.turn.is_empty()
                || f.record_refusals
                || self.dedupe.release_in_flight;
            let f = self.finishing();
            let (response, events) = (f.response.clone(), std::mem::take(&mut f.events));
            let done = self.cx.done(response, events);
            if !after {
                return Step::Done(done);
            }
            self.finishing().answered = Some(done.clone());
            self.stage = Stage::Answered;
            return Step::Answer(done, Box::new(self));
        }
        let f = self.finishing();
        if let Some(op) = f.turn.pop_front() {
            // The pair's turn goes back first: the next position alert need not wait for
            // this one's record.
            return self.store(Stage::Finishing, op);
        }
        if f.record.is_some() {
            let key = self.dedupe.record_key.clone();
            return self.store(Stage::RecordCheck, StoreOp::Get(key));
        }
        if std::mem::take(&mut self.dedupe.release_in_flight) {
            let key = self.dedupe.record_key.clone();
            return self.store(Stage::ReleaseRead, StoreOp::Get(key));
        }
        let f = self.finishing();
        if let Some(op) = f.ops.pop_front() {
            return self.store(Stage::Finishing, op);
        }
        if std::mem::take(&mut self.finishing().record_refusals) {
            let key = crate::refused_keys::KEY.to_string();
            return self.store(Stage::RefusedRead, StoreOp::Get(key));
        }
        let f = self.finishing();
        if let Some((filter, _)) = f.forget.first() {
            let filter = filter.clone();
            return self.store(Stage::ForgetRead, StoreOp::Get(filter));
        }
        if f.prune {
            f.prune = false;
            return self.store(Stage::PruneKeys, StoreOp::Keys);
        }
        Step::Done(f.answered.take().expect("answered"))
    }

    /// The refused keys' record read: this alert's refusals merged in and written back (a
    /// report for `/health`: two alerts that write it at once may lose one's entry, which
    /// the next refusal of that key writes again).
    pub(super) fn on_refused_read(self, reply: StoreReply) -> Step {
        let StoreReply::Value(current) = reply else {
            return self.next_op();
        };
        let value = crate::refused_keys::merge(
            current.as_deref(),
            self.cx.config.account.as_deref(),
            &self.signer.refused,
            self.cx.host.now.secs(),
        );
        let op = StoreOp::Set(crate::refused_keys::KEY.to_string(), value);
        self.store(Stage::Finishing, op)
    }

    // ---- pruning -----------------------------------------------------------------------

    pub(super) fn on_prune_keys(mut self, reply: StoreReply) -> Step {
        let StoreReply::Keys(keys) = reply else {
            return self.next_op();
        };
        let plan = idempotency::prune(
            &keys,
            self.cx.host.now.secs(),
            self.cx.config.state_max_keys,
        );
        let f = self.finishing();
        f.ops.extend(plan.delete.into_iter().map(StoreOp::Delete));
        if plan.forget.is_empty() {
            return self.next_op();
        }
        // Forgetting records inside their horizon rewrites the filters: one request at a
        // time, under a lease.
        f.forget = plan.forget;
        let lease = idempotency::prune_lease_key(self.cx.host.now.secs());
        self.store(Stage::PruneLease, StoreOp::Increment(lease, 1))
    }

    pub(super) fn on_prune_lease(mut self, reply: StoreReply) -> Step {
        let ours = matches!(reply, StoreReply::Count(1) | StoreReply::Unsupported);
        if !ours {
            // Another request prunes this slot.
            self.finishing().forget.clear();
        }
        self.next_op()
    }

    pub(super) fn on_forget_read(mut self, reply: StoreReply) -> Step {
        let mut filter = match reply {
            StoreReply::Value(Some(bytes)) => Forgotten::decode(&bytes),
            StoreReply::Value(None) => Forgotten::new(),
            _ => {
                // The filter cannot be read: forget nothing this time.
                self.finishing().forget.clear();
                return self.next_op();
            }
        };
        let (key, records) = self.finishing().forget.remove(0);
        for (_, name) in &records {
            filter.insert(name);
        }
        // The filter first, then the records it names.
        let f = self.finishing();
        f.ops.push_back(StoreOp::Set(key, filter.encode()));
        f.ops
            .extend(records.into_iter().map(|(k, _)| StoreOp::Delete(k)));
        self.next_op()
    }
}

use crate::bridge::Step;

/// The `released` form of an in-flight record; `None` for anything else.
pub(super) fn released(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut record = Record::decode(bytes)?;
    (record.state == RecordState::InFlight).then(|| {
        record.state = RecordState::Released;
        record.encode()
    })
}
