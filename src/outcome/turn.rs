//! The turn of a position alert (contract 2.6; the counters are [`crate::turn`]): taken
//! after the pair and the last trade are known and before the balance is read, held until
//! the answer, released after it.
//!
//! ```text
//! Increment each key ─ all 1 ─▶ Held ─▶ BalanceEx, plan, AddOrder … answer ─▶ release
//!   └ above 1 ─▶ BackingOff: Increment -1 each taken key ─▶ wait ─▶ Increment again
//!                  └ no time left for a turn ─▶ 503 retry-after (nothing placed)
//! no atomic counters (a host without them) ─▶ no turn: the portable build's limit
//! ```

use super::{Pending, Retry, Stage, BUDGET_MS, MIN_CALL_MS};
use crate::alert::Action;
use crate::bridge::Step;
use crate::store::{StoreOp, StoreReply};
use sha2::{Digest, Sha256};

/// A turn is only taken with this much of the budget left: enough for `BalanceEx` and
/// `AddOrder` at Kraken's usual pace.
pub const TURN_MIN_LEFT_MS: u64 = 600;

/// Where a position alert stands towards its pair's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Turn {
    /// No turn: not a position alert, or a host without atomic counters.
    None,
    /// Incrementing the counters in slot order; `taken` of them are incremented.
    Taking {
        keys: Vec<String>,
        taken: usize,
        tries: u8,
    },
    /// Another alert holds the turn: decrementing the `left` counters incremented, last
    /// first, before trying again.
    BackingOff {
        keys: Vec<String>,
        left: usize,
        tries: u8,
    },
    /// Every counter is this alert's until its answer.
    Held { keys: Vec<String> },
}

impl Turn {
    /// The counters this alert has incremented and not yet decremented.
    fn taken(&self) -> &[String] {
        match self {
            Turn::None => &[],
            Turn::Taking { keys, taken, .. } => &keys[..*taken],
            Turn::BackingOff { keys, left, .. } => &keys[..*left],
            Turn::Held { keys } => keys,
        }
    }

    /// The counter an increment in flight would leave up if it landed late.
    pub(super) fn in_flight(&self) -> Option<&String> {
        match self {
            Turn::Taking { keys, taken, .. } => keys.get(*taken),
            _ => None,
        }
    }
}

impl Pending {
    /// After the last trade: a position alert on a host with atomic counters takes its
    /// pair's turn before it reads the balance; anything else reads it now.
    pub(super) fn take_turn(mut self) -> Step {
        let wants = self.alert.action == Action::Position && self.store.atomic();
        if !wants || matches!(self.turn, Turn::Held { .. }) {
            return self.call(Stage::Balance, "BalanceEx", &[]);
        }
        let tries = match &self.turn {
            Turn::BackingOff { tries, .. } => tries.saturating_add(1),
            _ => 1,
        };
        let pair = self.market.pair_id();
        let from = self.started.millis();
        let keys = crate::turn::keys(
            from,
            from + BUDGET_MS,
            self.cx.config.account.as_deref(),
            &pair,
        );
        let first = keys[0].clone();
        self.turn = Turn::Taking {
            keys,
            taken: 0,
            tries,
        };
        self.store(Stage::Turn, StoreOp::Increment(first, 1))
    }

    pub(super) fn on_turn(mut self, reply: StoreReply) -> Step {
        let turn = std::mem::replace(&mut self.turn, Turn::None);
        match (turn, reply) {
            (Turn::Taking { keys, taken, tries }, StoreReply::Count(count)) => {
                let taken = taken + 1;
                if count != 1 {
                    // Someone else holds or takes this pair's turn: give back what was taken.
                    self.turn = Turn::BackingOff {
                        keys,
                        left: taken,
                        tries,
                    };
                    return self.back_off();
                }
                match keys.get(taken).cloned() {
                    Some(next) => {
                        self.turn = Turn::Taking { keys, taken, tries };
                        self.store(Stage::Turn, StoreOp::Increment(next, 1))
                    }
                    None => {
                        self.turn = Turn::Held { keys };
                        self.call(Stage::Balance, "BalanceEx", &[])
                    }
                }
            }
            (Turn::Taking { taken: 0, .. }, StoreReply::Unsupported) => {
                // A host without atomic counters: no turn can be taken (documented limit).
                self.store.lose_atomics();
                self.call(Stage::Balance, "BalanceEx", &[])
            }
            (turn @ Turn::Taking { .. }, other) => {
                // A store that fails or stalls: nothing is read or placed without the turn.
                self.turn = turn;
                self.unavailable(format!(
                    "the store did not give the pair's turn: {}",
                    describe(&other)
                ))
            }
            (Turn::BackingOff { keys, left, tries }, _) => {
                // A failed decrement leaves its counter up until its slot passes.
                self.turn = Turn::BackingOff {
                    keys,
                    left: left - 1,
                    tries,
                };
                self.back_off()
            }
            (turn, reply) => unreachable!("{turn:?} cannot take {reply:?}"),
        }
    }

    /// What becomes of the turn once the answer (`status`) is decided, as the store writes
    /// that follow the answer, first of all: every counter taken is given back; but an
    /// order whose fate is still unknown (`202`) keeps them, and takes every slot up to its
    /// Kraken deadline too, so that no position alert reads a balance the order may still
    /// change.
    pub(super) fn turn_after_answer(&mut self, status: u16) -> Vec<StoreOp> {
        let turn = std::mem::replace(&mut self.turn, Turn::None);
        let taken = turn.taken();
        if status != 202 || taken.is_empty() {
            return taken
                .iter()
                .map(|k| StoreOp::Increment(k.clone(), -1))
                .collect();
        }
        let until = self.sending.deadline.map_or(0, |d| d.millis());
        crate::turn::keys(
            self.cx.host.now.millis(),
            until,
            self.cx.config.account.as_deref(),
            &self.market.pair_id(),
        )
        .into_iter()
        .filter(|k| !taken.contains(k))
        .map(|k| StoreOp::Increment(k, 1))
        .collect()
    }

    /// Decrements the next counter taken, or, when none is left, waits for another try.
    fn back_off(mut self) -> Step {
        let Turn::BackingOff { keys, left, tries } = &self.turn else {
            unreachable!("backing off")
        };
        if *left > 0 {
            let key = keys[*left - 1].clone();
            return self.store(Stage::Turn, StoreOp::Increment(key, -1));
        }
        let wait = self.turn_wait_ms(*tries);
        if self.remaining_ms() < TURN_MIN_LEFT_MS + wait + MIN_CALL_MS {
            let pair = self.market.pair_name();
            return self.unavailable(format!(
                "another position alert for {pair} held its turn for the whole time budget"
            ));
        }
        self.stage = Stage::Wait(Retry::Turn);
        Step::Wait(wait, Box::new(self))
    }

    /// How long to wait before trying again: 40 to 110 ms, spread by request, so that
    /// alerts that backed off together do not try together.
    fn turn_wait_ms(&self, tries: u8) -> u64 {
        let digest = Sha256::digest(format!("{}/turn/{tries}", self.cx.host.request_id));
        40 + u64::from(digest[0]) % 71
    }
}

fn describe(reply: &StoreReply) -> String {
    match reply {
        StoreReply::Failed(e) | StoreReply::NoAnswer(e) => e.clone(),
        other => format!("{other:?}"),
    }
}
