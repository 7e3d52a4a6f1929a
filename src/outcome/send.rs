//! Sending the order and resolving what Kraken answered (contract 2.4 and 2.5): the look-up
//! before sending where the claim asks for one, AddOrder with its nonce retries and its
//! passes over a refused key, and the look-ups after an answer that leaves the order unknown.
//! The diagram in `outcome.rs` shows the paths.

use super::{List, Pending, Retry, Stage, MAX_NONCE_RETRIES, MIN_CALL_MS, ORDER_DEADLINE_MS};
use crate::audit::Level;
use crate::bridge::Step;
use crate::kraken::reply::{self, AddOrder, Lookup, Transport};
use crate::reject::Reject;
use crate::time::Now;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Which Kraken key signs this alert's calls, and the keys Kraken refused.
#[derive(Debug)]
pub(super) struct Signer {
    /// The key ([`crate::config::Config::kraken_key_for`]; 0 is `kraken_api_key`).
    pub(super) key: usize,
    /// The keys Kraken refused for this alert (numbered from 1), each passed over for the
    /// next.
    pub(super) refused: Vec<usize>,
}

impl Signer {
    pub(super) fn new(key: usize) -> Signer {
        Signer {
            key,
            refused: Vec::new(),
        }
    }
}

/// What is known of the order on Kraken, from the answers so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Known {
    /// Not on Kraken: not sent yet, or every AddOrder was answered with a refusal.
    #[default]
    Absent,
    /// An AddOrder's answer was lost or unclear: the order may exist. `deadline_elapsed`:
    /// Kraken said `EService:Deadline elapsed` (its engine refused the late order).
    Unsure { deadline_elapsed: bool },
    /// Kraken refused an AddOrder as a duplicate `cl_ord_id`: the order exists.
    Exists,
}

/// The sending stage's state.
#[derive(Debug, Default)]
pub(super) struct Sending {
    /// AddOrders sent.
    pub(super) attempts: u8,
    /// Calls repeated after a stale-nonce refusal.
    pub(super) nonce_retries: u8,
    pub(super) known: Known,
    /// The one resend after a certain absence was used.
    pub(super) resent: bool,
    /// The last AddOrder's `deadline`, on the host clock.
    pub(super) deadline: Option<Now>,
}

impl Sending {
    /// An AddOrder's answer was lost or unclear.
    fn unsure(&self) -> bool {
        matches!(self.known, Known::Unsure { .. })
    }
}

impl Pending {
    pub(super) fn lookup(self, stage: Stage) -> Step {
        let list = match stage {
            Stage::LookupBefore(l) | Stage::LookupAfter(l) => l,
            _ => unreachable!("not a look-up stage"),
        };
        let params = [("cl_ord_id", self.cl_ord_id.clone())];
        self.call(stage, list.method(), &params)
    }

    pub(super) fn on_lookup_before(self, list: List, t: &Transport) -> Step {
        match reply::find_order(t, list.key(), &self.cl_ord_id) {
            Lookup::Found {
                txid, description, ..
            } => {
                let body = self.placed_body(vec![txid], description);
                let record = self.record(200, &body);
                self.duplicate(&record, true)
            }
            Lookup::Absent if self.sending.known == Known::Exists && list == List::Open => {
                self.lookup(Stage::LookupBefore(List::Closed))
            }
            Lookup::Absent if self.sending.known == Known::Exists => {
                // Kraken said the order exists but neither list shows it yet.
                self.pending(
                    "Kraken reports a duplicate cl_ord_id that the look-up cannot find yet",
                )
            }
            Lookup::Absent => self.add(),
            Lookup::Failed(reason) if reply::is_key_refusal(&reason) && self.has_another_key() => {
                let mut this = self;
                this.pass_over_key();
                this.lookup(Stage::LookupBefore(list))
            }
            Lookup::Failed(reason) if reply::is_invalid_nonce(&reason) => {
                match self.retry_after_nonce(Retry::LookupBefore(list)) {
                    Ok(step) => step,
                    Err(this) => this.lookup_before_failed(reason),
                }
            }
            Lookup::Failed(reason) => self.lookup_before_failed(reason),
        }
    }

    pub(super) fn lookup_before_failed(self, reason: String) -> Step {
        if self.sending.known == Known::Exists {
            self.pending(&format!(
                "look-up after a duplicate refusal failed: {reason}"
            ))
        } else {
            // Nothing was sent: a resend later is safe and worthwhile.
            self.unavailable(format!("look-up before sending failed: {reason}"))
        }
    }

    /// Waits a jitter, then repeats a call Kraken refused for a stale nonce (a request
    /// of another instance, or of this one, overtook it); `Err` when the budget or the
    /// retry count does not allow it.
    pub(super) fn retry_after_nonce(mut self, retry: Retry) -> Result<Step, Box<Pending>> {
        let ms = self.jitter_ms();
        if self.sending.nonce_retries >= MAX_NONCE_RETRIES || self.remaining_ms() < MIN_CALL_MS + ms
        {
            return Err(Box::new(self));
        }
        self.sending.nonce_retries += 1;
        self.stage = Stage::Wait(retry);
        Ok(Step::Wait(ms, Box::new(self)))
    }

    pub(super) fn add(mut self) -> Step {
        self.sending.attempts += 1;
        let deadline = Now(self.cx.host.now.0 + ORDER_DEADLINE_MS * 1_000);
        self.sending.deadline = Some(deadline);
        let mut params = self.order.as_ref().expect("planned").params();
        params.push(("deadline", deadline.rfc3339()));
        self.call(Stage::Add, "AddOrder", &params)
    }

    pub(super) fn on_add(mut self, t: &Transport) -> Step {
        let validate = self.order.as_ref().is_some_and(|o| o.validate);
        match reply::add_order(t, validate) {
            AddOrder::Placed { txid, description } => {
                let body = self.placed_body(txid.clone(), description);
                let event = self.event(Level::Info, "order_placed").with("txid", txid);
                self.respond(200, body, event)
            }
            AddOrder::Validated { description } => {
                let body =
                    self.with_holding(json!({ "status": "validated", "description": description }));
                let event = self.event(Level::Info, "order_validated");
                self.respond(200, body, event)
            }
            AddOrder::Rejected { error }
                if reply::is_key_refusal(&error) && self.has_another_key() =>
            {
                // Kraken did nothing with a key it refuses: the next key of the pool sends it.
                self.pass_over_key();
                self.add()
            }
            AddOrder::Rejected { error } if error.starts_with("EOrder:Duplicate order") => {
                // Kraken already holds an open order with this cl_ord_id: another delivery
                // of the same alert won the race. Find it and answer as its duplicate.
                self.sending.known = Known::Exists;
                self.lookup(Stage::LookupBefore(List::Open))
            }
            AddOrder::Rejected { error } => {
                let event = self
                    .event(Level::Warn, "order_rejected")
                    .with("kraken_error", error.clone());
                let unknown_pair = error.starts_with("EQuery:Unknown asset pair");
                let reject = Reject::OrderRejected {
                    kraken_error: error,
                };
                let mut step_owner = self;
                if unknown_pair && step_owner.store.present() {
                    // The cached pairs are out of date: the next alert fetches them again.
                    step_owner.market.cache = super::PairCache::Forget;
                }
                step_owner.reject_recorded(reject, event)
            }
            AddOrder::Transient { error } if reply::is_invalid_nonce(&error) => {
                if self.sending.unsure() {
                    // After an unanswered attempt, a nonce refusal can mean that attempt
                    // arrived: the order may exist.
                    self.after_ambiguity(error)
                } else {
                    match self.retry_after_nonce(Retry::Add) {
                        Ok(step) => step,
                        Err(this) => this.unavailable(error),
                    }
                }
            }
            AddOrder::Transient { error } => {
                if self.sending.unsure() {
                    self.after_ambiguity(error)
                } else {
                    self.unavailable(error)
                }
            }
            AddOrder::Ambiguous { reason } => self.after_ambiguity(reason),
        }
    }

    pub(super) fn after_ambiguity(mut self, reason: String) -> Step {
        let elapsed = reason.starts_with("EService:Deadline elapsed");
        let deadline_elapsed = match self.sending.known {
            Known::Unsure { deadline_elapsed } => deadline_elapsed || elapsed,
            _ => elapsed,
        };
        self.sending.known = Known::Unsure { deadline_elapsed };
        self.lookup(Stage::LookupAfter(List::Open))
    }

    pub(super) fn on_lookup_after(mut self, list: List, t: &Transport) -> Step {
        match reply::find_order(t, list.key(), &self.cl_ord_id) {
            Lookup::Found {
                txid, description, ..
            } => {
                let body = self.placed_body(vec![txid.clone()], description);
                let event = self
                    .event(Level::Info, "order_placed")
                    .with("txid", vec![txid])
                    .with("found_by_lookup", true);
                self.respond(200, body, event)
            }
            Lookup::Absent if list == List::Open => self.lookup(Stage::LookupAfter(List::Closed)),
            Lookup::Absent => {
                let past_deadline = self
                    .sending
                    .deadline
                    .is_some_and(|d| self.cx.host.now.0 > d.0 + 1_000_000);
                let elapsed = matches!(
                    self.sending.known,
                    Known::Unsure {
                        deadline_elapsed: true
                    }
                );
                if !self.sending.resent && (elapsed || past_deadline) {
                    // Certainly absent: Kraken's engine can no longer accept the first one.
                    self.sending.resent = true;
                    self.sending.known = Known::Absent;
                    self.add()
                } else {
                    self.pending("not found yet; the order may still land before its deadline")
                }
            }
            Lookup::Failed(reason) if reply::is_invalid_nonce(&reason) => {
                match self.retry_after_nonce(Retry::LookupAfter(list)) {
                    Ok(step) => step,
                    Err(this) => this.pending(&format!("look-up failed: {reason}")),
                }
            }
            Lookup::Failed(reason) => self.pending(&format!("look-up failed: {reason}")),
        }
    }

    /// The budget ran out before the next call.
    pub(super) fn out_of_time(self) -> Step {
        if self.sending.known != Known::Absent {
            self.pending("time budget spent before the look-up finished")
        } else {
            self.unavailable("time budget spent before Kraken answered".into())
        }
    }

    /// A per-request jitter of 10 to 40 ms, from the request id (no ambient randomness).
    pub(super) fn jitter_ms(&self) -> u64 {
        let digest = Sha256::digest(format!(
            "{}/{}",
            self.cx.host.request_id, self.sending.nonce_retries
        ));
        10 + u64::from(digest[0]) % 31
    }

    /// Whether a key of the pool that Kraken has not refused for this alert is left.
    pub(super) fn has_another_key(&self) -> bool {
        self.signer.refused.len() + 1 < self.cx.config.kraken_key_count()
    }

    /// Kraken refused the key in use: sign with the next one of the pool from now on.
    pub(super) fn pass_over_key(&mut self) {
        self.signer.refused.push(self.signer.key + 1);
        self.signer.key = (self.signer.key + 1) % self.cx.config.kraken_key_count().max(1);
    }
}
