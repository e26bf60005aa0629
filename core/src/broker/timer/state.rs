//! Timed delivery at any time (RocketMQ 5.x's timer messages): what a send's `TIMER_*`
//! properties ask for, and where such a message waits.
//!
//! A timed message is stored in [`TIMER_TOPIC`] queue 0 with `TIMER_OUT_MS` (its due time)
//! and its real topic and queue in `REAL_TOPIC`/`REAL_QID`; the ConsumeQueue entry's tags
//! code carries the due time, so the pending set can be rebuilt from the queue alone.

use crate::io::UnixMillis;
use crate::protocol::message::properties::{self, keys};
use crate::store::PhysOffset;

/// The topic timed messages wait in; the store gives its entries their due time as tags
/// code (`StoreConfig::due_time_topics`), so the wheel can be rebuilt from the queue alone.
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// The longest delay accepted by default: 40 days.
pub const DEFAULT_MAX_DELAY_MS: u64 = 40 * 86_400 * 1_000;

/// Why a timed send is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// A `TIMER_*` value is not a number.
    #[error("{key} is not a number: {value:?}")]
    NotANumber {
        /// The property.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// The delay is negative or past the broker's maximum.
    #[error("timed delivery {delay_ms} ms from now is outside 0..={max_ms} ms (timerMaxDelaySec)")]
    OutOfRange {
        /// The delay asked for.
        delay_ms: i64,
        /// The broker's maximum.
        max_ms: u64,
    },
}

/// When a send's `TIMER_*` properties ask it to be delivered, by the broker's wall clock
/// `now`: `None` if it has none. Precedence as in RocketMQ: `TIMER_DELAY_SEC`, then
/// `TIMER_DELAY_MS`, then `TIMER_DELIVER_MS` (absolute). A due time already past is allowed
/// (the caller stores the message at once); one beyond `max_delay_ms` is refused.
pub fn deliver_at(
    given: &[u8],
    now: UnixMillis,
    max_delay_ms: u64,
) -> Result<Option<UnixMillis>, TimerError> {
    let read = |key: &'static str| -> Result<Option<i64>, TimerError> {
        let Some(raw) = properties::find(given, key) else { return Ok(None) };
        let text = String::from_utf8_lossy(raw);
        text.trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| TimerError::NotANumber { key, value: text.into_owned() })
    };
    let due = if let Some(seconds) = read(keys::TIMER_DELAY_SEC)? {
        now.plus_millis(seconds.saturating_mul(1_000))
    } else if let Some(millis) = read(keys::TIMER_DELAY_MS)? {
        now.plus_millis(millis)
    } else if let Some(at) = read(keys::TIMER_DELIVER_MS)? {
        UnixMillis(at)
    } else {
        return Ok(None);
    };
    let delay_ms = due.0.saturating_sub(now.0);
    let too_far = u64::try_from(delay_ms).is_ok_and(|d| d > max_delay_ms);
    let negative_relative = delay_ms < 0
        && (properties::find(given, keys::TIMER_DELAY_SEC).is_some()
            || properties::find(given, keys::TIMER_DELAY_MS).is_some());
    if too_far || negative_relative {
        return Err(TimerError::OutOfRange { delay_ms, max_ms: max_delay_ms });
    }
    Ok(Some(due))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            properties::push(&mut out, k, v);
        }
        out
    }

    #[test]
    fn relative_delays_come_before_an_absolute_time_and_past_times_are_due_now() {
        let now = UnixMillis(1_790_000_000_000);
        let max = DEFAULT_MAX_DELAY_MS;
        assert_eq!(deliver_at(&props(&[("TAGS", "a")]), now, max), Ok(None));
        let both = props(&[(keys::TIMER_DELIVER_MS, "5"), (keys::TIMER_DELAY_SEC, "3")]);
        assert_eq!(deliver_at(&both, now, max), Ok(Some(now.plus_millis(3_000))));
        assert_eq!(
            deliver_at(&props(&[(keys::TIMER_DELAY_MS, "250")]), now, max),
            Ok(Some(now.plus_millis(250)))
        );
        let past = props(&[(keys::TIMER_DELIVER_MS, &(now.0 - 10).to_string())]);
        assert_eq!(deliver_at(&past, now, max), Ok(Some(now.plus_millis(-10))));
    }

    #[test]
    fn beyond_the_maximum_negative_or_garbled_is_refused() {
        let now = UnixMillis(1_790_000_000_000);
        let max = DEFAULT_MAX_DELAY_MS;
        let forty_days = props(&[(keys::TIMER_DELAY_SEC, &(40 * 86_400).to_string())]);
        assert_eq!(deliver_at(&forty_days, now, max), Ok(Some(now.plus_millis(40 * 86_400_000))));
        let later = props(&[(keys::TIMER_DELIVER_MS, &(now.0 + 40 * 86_400_000 + 1).to_string())]);
        assert!(matches!(deliver_at(&later, now, max), Err(TimerError::OutOfRange { .. })));
        let negative = props(&[(keys::TIMER_DELAY_MS, "-5")]);
        assert!(matches!(deliver_at(&negative, now, max), Err(TimerError::OutOfRange { .. })));
        let garbled = props(&[(keys::TIMER_DELAY_SEC, "soon")]);
        let error = deliver_at(&garbled, now, max).unwrap_err();
        assert!(error.to_string().contains("TIMER_DELAY_SEC"), "{error}");
    }
}

/// A timed message waiting in the wheel: its timer-queue offset and record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Offset in the timer queue.
    pub offset: u64,
    /// CommitLog offset of its record.
    pub phys: PhysOffset,
    /// Record size.
    pub size: u32,
    /// Due time.
    pub due: UnixMillis,
}

/// What survives a crash (`config/timerCheckpoint.json`): enough to rebuild the pending set
/// from the timer queue without losing a timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TimerCheckpoint {
    /// Every timer-queue offset below this was delivered (durably).
    pub low_water: u64,
    /// Timer-queue entries below this had been read into the wheel...
    pub enqueued: u64,
    /// ...and those of them due before this tick had been delivered (durably).
    pub read_tick: u64,
}

/// The tick of wall time `ms` with ticks of `precision_ms`.
fn tick_of(at: UnixMillis, precision_ms: u64) -> u64 {
    at.since_epoch() / precision_ms
}

/// The timed messages' state: the wheel, what was delivered, and the checkpoint that may
/// be persisted. Pure: the broker reads the queue, stores the deliveries and writes the
/// checkpoint.
///
/// After a crash, entries from `low_water` on are read again; one below `enqueued` whose
/// tick is before `read_tick` was delivered and is skipped, every other is pending again.
/// So a delivery may repeat after a crash (one not yet checkpointed), and none is lost. A
/// checkpoint becomes persistable only once the deliveries before it are durable, and its
/// `read_tick` never passes a timer that expired but is not delivered (a failed store).
#[derive(Debug)]
pub struct TimerState {
    wheel: super::wheel::TimerWheel<Pending>,
    precision_ms: u64,
    /// The checkpoint recovered from (its skip rule applies to entries below `enqueued`).
    recovered: TimerCheckpoint,
    /// Next timer-queue offset to read.
    enqueued: u64,
    low_water: u64,
    /// From `low_water` on: whether each entry was delivered (or skipped).
    done: std::collections::VecDeque<bool>,
    /// Expired and not handed out yet, a failed delivery in front: handing them out a
    /// bounded batch at a time keeps a burst of timers due in one tick from stalling the
    /// broker's other work.
    ready: std::collections::VecDeque<Pending>,
    /// Expired and not delivered yet (ready or handed out), or behind: (tick, offset).
    outstanding: std::collections::BTreeSet<(u64, u64)>,
    /// Timers for ticks the wheel has already passed, by (tick, offset): its clock ran ahead
    /// before a backward step. The wheel would hand them out at once, early by the clock
    /// now; they wait here for the clock instead.
    behind: std::collections::BTreeMap<(u64, u64), Pending>,
    /// Deliveries stored, not yet durable: (CommitLog end, the checkpoint valid after it).
    in_flight: std::collections::VecDeque<(PhysOffset, TimerCheckpoint)>,
    durable: TimerCheckpoint,
    changed: bool,
}

impl TimerState {
    /// Resume from `checkpoint` (default on a first start), with ticks of `precision_ms`.
    #[must_use]
    pub fn new(checkpoint: TimerCheckpoint, precision_ms: u64) -> Self {
        Self {
            wheel: super::wheel::TimerWheel::new(checkpoint.read_tick),
            precision_ms: precision_ms.max(1),
            recovered: checkpoint,
            enqueued: checkpoint.low_water,
            low_water: checkpoint.low_water,
            done: std::collections::VecDeque::new(),
            ready: std::collections::VecDeque::new(),
            outstanding: std::collections::BTreeSet::new(),
            behind: std::collections::BTreeMap::new(),
            in_flight: std::collections::VecDeque::new(),
            durable: checkpoint,
            changed: false,
        }
    }

    /// The tick of a wall time: due timers of a tick come out once the clock is past it.
    fn tick(&self, at: UnixMillis) -> u64 {
        tick_of(at, self.precision_ms)
    }

    /// When tick `tick`'s timers come out: once the clock reaches the start of the next.
    fn released_at(&self, tick: u64) -> u64 {
        (tick + 1).saturating_mul(self.precision_ms)
    }

    /// Every timer due before this time has been delivered (or dropped), durably.
    #[must_use]
    pub fn durably_done_before(&self) -> UnixMillis {
        let ms = self.durable.read_tick.saturating_mul(self.precision_ms);
        UnixMillis(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// Whether a timer due at `due` may have been handed out for delivery: its tick is
    /// past the wheel's.
    #[must_use]
    pub fn may_be_out(&self, due: UnixMillis) -> bool {
        self.tick(due) < self.wheel.current()
    }

    /// The next timer-queue offset to read.
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.enqueued
    }

    /// Timers waiting (in the wheel or expired and not handed out).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.wheel.len() + self.ready.len() + self.behind.len()
    }

    /// How long the oldest expired, undelivered timer has been waiting since its tick was
    /// past, ms (0 with none): how far delivery is behind the clock.
    #[must_use]
    pub fn overdue_ms(&self, now: UnixMillis) -> u64 {
        self.outstanding
            .first()
            .map_or(0, |&(tick, _)| now.since_epoch().saturating_sub(self.released_at(tick)))
    }

    /// Expired timers not handed out yet: more to deliver now.
    #[must_use]
    pub fn backlog(&self) -> usize {
        self.ready.len()
    }

    /// The timer queue's entry at `offset` (the next one to read), due at `due`.
    pub fn enqueue(&mut self, offset: u64, phys: PhysOffset, size: u32, due: UnixMillis) {
        debug_assert_eq!(offset, self.enqueued);
        self.enqueued = offset + 1;
        self.done.push_back(false);
        let tick = self.tick(due);
        if offset < self.recovered.enqueued && tick < self.recovered.read_tick {
            // Delivered before the crash.
            self.mark_done(offset);
            return;
        }
        let pending = Pending { offset, phys, size, due };
        if tick < self.wheel.current() {
            // Never early: held until the clock, not the wheel, passes its tick. It counts
            // as outstanding, so the checkpoint never claims its tick.
            self.outstanding.insert((tick, offset));
            self.behind.insert((tick, offset), pending);
            return;
        }
        self.wheel.insert(tick, pending);
    }

    /// Up to `max` timers due by the wall clock `now`, in due order (a failed one
    /// first): deliver each, then report it with [`delivered`](Self::delivered) or
    /// [`failed`](Self::failed).
    pub fn due(&mut self, now: UnixMillis, max: usize) -> Vec<Pending> {
        let now = self.tick(now);
        let precision = self.precision_ms;
        if self.ready.iter().any(|p| tick_of(p.due, precision) >= now) {
            // The clock stepped back since these expired (their delivery failed, say on a
            // full disk, or waits for its batch): they wait for it again, never early.
            let (wait, go) = core::mem::take(&mut self.ready)
                .into_iter()
                .partition::<std::collections::VecDeque<_>, _>(|p| tick_of(p.due, precision) >= now);
            self.ready = go;
            for pending in wait {
                self.behind.insert((tick_of(pending.due, precision), pending.offset), pending);
            }
        }
        while let Some(entry) = self.behind.first_entry() {
            if entry.key().0 >= now {
                break;
            }
            self.ready.push_back(entry.remove());
        }
        let (ready, outstanding, precision) = (&mut self.ready, &mut self.outstanding, self.precision_ms);
        self.wheel.advance(now, |_, pending| {
            outstanding.insert((tick_of(pending.due, precision), pending.offset));
            ready.push_back(pending);
        });
        let take = max.min(self.ready.len());
        self.ready.drain(..take).collect()
    }

    /// Timer-queue entries from the next one to read up to `upto` are gone (deleted by
    /// retention): they count as done, unread. After a restart the queue's minimum has
    /// moved past them too, so the checkpoint need not record them.
    pub fn skip_to(&mut self, upto: u64) {
        if self.enqueued >= upto {
            return;
        }
        if self.done.is_empty() && self.low_water == self.enqueued {
            self.low_water = upto;
        } else {
            // Entries skipped in one queue: a count that fits memory, so a usize.
            let Ok(gap) = usize::try_from(upto - self.enqueued) else {
                panic!("{} timer entries skipped at once", upto - self.enqueued);
            };
            self.done.extend(core::iter::repeat_n(true, gap));
        }
        self.enqueued = upto;
    }

    /// A due timer's delivery could not be stored: it is handed out first next time.
    pub fn failed(&mut self, pending: Pending) {
        self.ready.push_front(pending);
    }

    /// A due timer was stored in its real topic, ending at CommitLog offset `end` (or was
    /// dropped as unreadable: `end` 0).
    pub fn delivered(&mut self, pending: &Pending, end: PhysOffset) {
        self.outstanding.remove(&(self.tick(pending.due), pending.offset));
        self.mark_done(pending.offset);
        // The checkpoint after it never claims a tick whose timer is not delivered yet:
        // one ready, handed out and not reported, or failed.
        let read_tick =
            self.outstanding.first().map_or(self.wheel.current(), |o| o.0.min(self.wheel.current()));
        let candidate = TimerCheckpoint { low_water: self.low_water, enqueued: self.enqueued, read_tick };
        self.in_flight.push_back((end, candidate));
    }

    fn mark_done(&mut self, offset: u64) {
        if let Some(flag) =
            offset.checked_sub(self.low_water).and_then(|i| self.done.get_mut(usize::try_from(i).ok()?))
        {
            *flag = true;
        }
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.low_water += 1;
        }
    }

    /// Deliveries up to CommitLog offset `durable_end` are durable: their checkpoint may
    /// be persisted.
    pub fn settle(&mut self, durable_end: PhysOffset) {
        while let Some((end, candidate)) = self.in_flight.front().copied() {
            if end > durable_end {
                break;
            }
            self.in_flight.pop_front();
            self.durable = candidate;
            self.changed = true;
        }
    }

    /// The checkpoint to persist, if it changed since last asked.
    pub fn take_checkpoint(&mut self) -> Option<TimerCheckpoint> {
        core::mem::take(&mut self.changed).then_some(self.durable)
    }

    /// How long until the next timer may be due by the wall clock `now`, ms: `None` with
    /// nothing pending, 0 with expired timers ready.
    #[must_use]
    pub fn wait_ms(&self, now: UnixMillis) -> Option<u64> {
        if !self.ready.is_empty() {
            return Some(0);
        }
        let behind = self.behind.keys().next().map(|(tick, _)| *tick);
        let tick = self.wheel.next_tick().into_iter().chain(behind).min()?;
        Some(self.released_at(tick).saturating_sub(now.since_epoch()))
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    /// Enqueue `dues` (ms) at offsets from the state's next one; phys = offset * 100.
    fn enqueue_all(state: &mut TimerState, dues: &[i64]) {
        for due in dues {
            let offset = state.next_offset();
            state.enqueue(offset, PhysOffset(offset * 100), 100, UnixMillis(*due));
        }
    }

    fn offsets(pending: &[Pending]) -> Vec<u64> {
        pending.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn timers_are_never_early_and_late_by_under_one_tick() {
        let mut state = TimerState::new(TimerCheckpoint::default(), 1_000);
        enqueue_all(&mut state, &[10_500, 10_000, 12_999]);
        assert!(state.due(UnixMillis(10_999), 100).is_empty());
        assert_eq!(state.wait_ms(UnixMillis(10_999)), Some(1));
        assert_eq!(offsets(&state.due(UnixMillis(11_000), 100)), [0, 1]);
        assert!(state.due(UnixMillis(12_999), 100).is_empty());
        assert_eq!(offsets(&state.due(UnixMillis(13_000), 100)), [2]);
        assert_eq!(state.wait_ms(UnixMillis(13_000)), None);
    }

    #[test]
    fn after_a_crash_only_checkpointed_durable_deliveries_are_skipped() {
        let mut state = TimerState::new(TimerCheckpoint::default(), 1_000);
        // Offsets 0..4: due at 5 s, 1 h, 6 s, 40 days.
        enqueue_all(&mut state, &[5_000, 3_600_000, 6_000, 40 * 86_400_000]);
        for pending in state.due(UnixMillis(7_000), 100) {
            state.delivered(&pending, pending.phys + 100);
        }
        // Only the first delivery (ending at 100) became durable before the crash.
        state.settle(PhysOffset(100));
        let checkpoint = state.take_checkpoint().expect("a durable delivery");
        assert_eq!(checkpoint.low_water, 1);

        let mut recovered = TimerState::new(checkpoint, 1_000);
        enqueue_all(&mut recovered, &[3_600_000, 6_000, 40 * 86_400_000]);
        // Offset 2 (6 s) was delivered but not checkpointed: delivered again, never lost.
        assert_eq!(offsets(&recovered.due(UnixMillis(7_000), 100)), [2]);
        assert_eq!(recovered.pending(), 2);
        assert_eq!(offsets(&recovered.due(UnixMillis(3_601_000), 100)), [1]);
    }

    #[test]
    fn a_failed_delivery_is_retried_and_holds_the_checkpoint_back() {
        let mut state = TimerState::new(TimerCheckpoint::default(), 1_000);
        enqueue_all(&mut state, &[1_000, 2_000]);
        let due = state.due(UnixMillis(3_000), 100);
        assert_eq!(offsets(&due), [0, 1]);
        state.failed(due[0]);
        state.delivered(&due[1], PhysOffset(200));
        state.settle(PhysOffset(200));
        let checkpoint = state.take_checkpoint().expect("checkpoint");
        assert_eq!(checkpoint.low_water, 0, "offset 0 is not delivered");
        assert!(checkpoint.read_tick <= 1, "the failed timer's tick is not claimed: {checkpoint:?}");
        assert_eq!(state.wait_ms(UnixMillis(3_000)), Some(0));
        assert_eq!(offsets(&state.due(UnixMillis(3_000), 100)), [0]);
    }

    #[test]
    fn a_burst_due_in_one_tick_is_handed_out_in_bounded_batches_holding_the_checkpoint() {
        let mut state = TimerState::new(TimerCheckpoint::default(), 1_000);
        enqueue_all(&mut state, &[5_000; 10]);
        enqueue_all(&mut state, &[9_000]);
        let first = state.due(UnixMillis(6_000), 4);
        assert_eq!(offsets(&first), [0, 1, 2, 3]);
        assert_eq!(state.backlog(), 6);
        assert_eq!(state.wait_ms(UnixMillis(6_000)), Some(0), "the rest is due now");
        assert_eq!(state.overdue_ms(UnixMillis(7_500)), 1_500, "tick 5 was released at 6 s");
        for pending in &first {
            state.delivered(pending, pending.phys + 100);
        }
        state.settle(PhysOffset(u64::MAX));
        let checkpoint = state.take_checkpoint().expect("checkpoint");
        assert_eq!(checkpoint.low_water, 4);
        assert!(checkpoint.read_tick <= 5, "ready timers of tick 5 are not claimed: {checkpoint:?}");
        let second = state.due(UnixMillis(6_000), 4);
        assert_eq!(offsets(&second), [4, 5, 6, 7]);
        let third = state.due(UnixMillis(6_000), 4);
        assert_eq!(offsets(&third), [8, 9]);
        assert_eq!(state.backlog(), 0);
        assert_eq!(state.overdue_ms(UnixMillis(7_500)), 1_500, "handed out, not yet reported");
        for pending in second.iter().chain(&third) {
            state.delivered(pending, pending.phys + 100);
        }
        assert_eq!(state.overdue_ms(UnixMillis(7_500)), 0, "every due timer delivered");
        assert_eq!(state.wait_ms(UnixMillis(6_000)), Some(4_000));
    }

    #[test]
    fn after_a_backward_step_a_timer_behind_the_wheel_waits_for_the_clock() {
        let mut state = TimerState::new(TimerCheckpoint::default(), 1_000);
        enqueue_all(&mut state, &[100_000]);
        assert_eq!(offsets(&state.due(UnixMillis(101_000), 100)), [0], "the wheel is at tick 101");
        // The clock steps back to 50 s; a timer due at 55.5 s is behind the wheel.
        enqueue_all(&mut state, &[55_500, 200_000]);
        assert!(state.due(UnixMillis(50_000), 100).is_empty(), "never early by the clock");
        assert_eq!(state.wait_ms(UnixMillis(50_000)), Some(6_000));
        assert_eq!(state.pending(), 2);
        assert!(state.due(UnixMillis(55_999), 100).is_empty());
        let due = state.due(UnixMillis(56_000), 100);
        assert_eq!(offsets(&due), [1]);
        // Until delivered, its tick holds the checkpoint back: a crash must not skip it.
        state.delivered(&due[0], PhysOffset(200));
        state.settle(PhysOffset(200));
        let checkpoint = state.take_checkpoint().expect("checkpoint");
        assert!(checkpoint.read_tick <= 101, "{checkpoint:?}");
        assert!(state.wait_ms(UnixMillis(56_000)).is_some_and(|w| w > 0 && w <= 145_000), "the wheel's next");
    }

    #[test]
    fn a_failed_delivery_waits_for_the_clock_again_after_a_backward_step() {
        let mut state = TimerState::new(TimerCheckpoint::default(), 1_000);
        enqueue_all(&mut state, &[100_000, 100_500]);
        let due = state.due(UnixMillis(101_000), 100);
        assert_eq!(offsets(&due), [0, 1]);
        // Both copies are refused (a full disk), then the clock steps back to 60 s.
        for pending in due.into_iter().rev() {
            state.failed(pending);
        }
        assert!(state.due(UnixMillis(60_000), 100).is_empty(), "handed out again before its due time");
        assert_eq!(state.pending(), 2);
        assert_eq!(offsets(&state.due(UnixMillis(101_000), 100)), [0, 1]);
    }
}
