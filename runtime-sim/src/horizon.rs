//! Retention's horizon as the checkers see it: which messages the broker may have deleted.
//!
//! The broker deletes a CommitLog segment only once its newest message's store time plus
//! `fileReservedTime` has been passed by its wall clock (`core/src/store/retention.rs`).
//! So a message may be missing only if its store time plus the reserved time is at most the
//! highest reading the broker's wall clock ever had. Anything younger must still be there.
//!
//! The history does not carry store times, so they are bounded from below:
//! - a store time is the broker's wall clock when it stored the message, or later (store
//!   times never go back in log order);
//! - the clock only moves forward between the send and the acknowledgement, except where a
//!   backward step lowers it.
//!
//! So the store time is at least the lowest of the clock at the first send and where every
//! backward step in between left the clock. With that lower bound the check never blames a
//! deletion retention was allowed to make. It also excuses no more than one step's width.

use std::collections::BTreeMap;

use crate::history::{Event, History, Key};

/// What retention may have deleted by the end of a run (or by now, during the run).
#[derive(Debug, Clone, Default)]
pub struct Horizon {
    /// `fileReservedTime`, ms; `None` when retention never deletes in the run.
    reserved_ms: Option<u64>,
    /// The highest the broker's wall clock read.
    high_ms: i64,
    /// Per key: when it was first sent, and the broker's lowest wall reading at any send.
    sent: BTreeMap<Key, (u64, i64)>,
    /// Every backward step of the broker's wall clock: when, and where it left the clock.
    steps_back: Vec<(u64, i64)>,
}

impl Horizon {
    /// The horizon of `history` with the broker's clock at its highest `high_ms`, or, if
    /// `None`, as the history's end-of-run `BrokerClock` records it.
    #[must_use]
    pub fn of(history: &History, reserved_ms: Option<u64>, high_ms: Option<i64>) -> Self {
        let mut horizon = Self { reserved_ms, high_ms: high_ms.unwrap_or(i64::MIN), ..Self::default() };
        for entry in history.entries() {
            match &entry.event {
                Event::SendAttempt { key, broker_wall_ms, .. }
                | Event::TimingSent { key, broker_wall_ms, .. } => {
                    let sent = horizon.sent.entry(*key).or_insert((entry.at_ms, *broker_wall_ms));
                    sent.1 = sent.1.min(*broker_wall_ms);
                }
                Event::BrokerClockStep { from_ms, to_ms } if to_ms < from_ms => {
                    horizon.steps_back.push((entry.at_ms, *to_ms));
                }
                Event::BrokerClock { high_ms: end, .. } if high_ms.is_none() => horizon.high_ms = *end,
                _ => {}
            }
        }
        horizon
    }

    /// Whether retention may have deleted `key`, stored at the latest at `stored_by_ms` of
    /// true time (its acknowledgement).
    #[must_use]
    pub fn expired(&self, key: Key, stored_by_ms: u64) -> bool {
        let Some(reserved) = self.reserved_ms else { return false };
        let Some(&(first_ms, wall)) = self.sent.get(&key) else { return false };
        let lowest = self
            .steps_back
            .iter()
            .filter(|(at, _)| (first_ms..=stored_by_ms).contains(at))
            .map(|(_, to)| *to)
            .fold(wall, i64::min);
        lowest.saturating_add_unsigned(reserved) <= self.high_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(h: &mut History, at: u64, key: Key, wall: i64) {
        h.push(at, Event::SendAttempt { producer: 0, key, queue: 0, broker_wall_ms: wall });
    }

    #[test]
    fn only_what_the_clock_passed_by_the_reserved_time_may_be_gone() {
        let mut h = History::default();
        sent(&mut h, 0, 1, 1_000_000);
        sent(&mut h, 5_000, 2, 1_005_000);
        h.push(60_000, Event::BrokerClock { wall_ms: 1_060_000, high_ms: 1_060_000 });
        let horizon = Horizon::of(&h, Some(58_000), None);
        assert!(horizon.expired(1, 10), "sent at 1,000,000: 60 s old by the end");
        assert!(!horizon.expired(2, 5_010), "55 s old by the end");
        assert!(!Horizon::of(&h, None, None).expired(1, 10), "no retention, nothing expires");
        assert!(!horizon.expired(3, 10), "an unknown key is never excused");
        // During the run, the clock's highest reading so far decides.
        assert!(!Horizon::of(&h, Some(58_000), Some(1_050_000)).expired(1, 10));
    }

    #[test]
    fn a_forward_step_ages_everything_and_a_backward_step_lowers_the_bound() {
        let mut h = History::default();
        sent(&mut h, 0, 1, 1_000_000);
        h.push(1_000, Event::BrokerClockStep { from_ms: 1_001_000, to_ms: 901_000 });
        sent(&mut h, 2_000, 2, 902_000);
        h.push(3_000, Event::BrokerClock { wall_ms: 903_000, high_ms: 1_001_000 });
        let horizon = Horizon::of(&h, Some(60_000), None);
        // Key 1 was acknowledged after the step: it may have been stored at 901,000.
        assert!(horizon.expired(1, 1_500));
        // Acknowledged before the step: stored at 1,000,000 or later.
        assert!(!horizon.expired(1, 500));
        assert!(horizon.expired(2, 2_100), "902,000 + 60 s is below the high of 1,001,000");
        let mut forward = History::default();
        sent(&mut forward, 0, 1, 1_000_000);
        forward.push(1_000, Event::BrokerClockStep { from_ms: 1_001_000, to_ms: 4_601_000 });
        forward.push(3_000, Event::BrokerClock { wall_ms: 4_603_000, high_ms: 4_603_000 });
        assert!(Horizon::of(&forward, Some(3_600_000), None).expired(1, 10));
    }
}
