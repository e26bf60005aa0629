//! Throughput over recent windows, as RocketMQ's runtime info reports it (`putTps`,
//! `getTransferredTps` over 10 s, 1 min and 10 min; the timer's enqueue and dequeue rates),
//! and the counters at the start of each day (`msgPutTotalTodayMorning` and the like).
//!
//! Counters are sampled at most once a second, when the broker handles an input, so an idle
//! broker takes no samples. That loses nothing: a counter does not move while nothing
//! happens, so the last sample before a quiet spell still holds at any instant inside it.

use std::collections::VecDeque;

use crate::io::{MonoNanos, UnixMillis};

/// Least time between two samples.
const SAMPLE_EVERY_NS: u64 = 1_000_000_000;
/// Samples kept: ten minutes of one a second, and one more to reach back that far.
const KEEP: usize = 602;

/// Samples of `N` monotonic counters, bounded to the last ten minutes.
#[derive(Debug, Clone)]
pub struct Rates<const N: usize> {
    samples: VecDeque<(MonoNanos, [u64; N])>,
}

impl<const N: usize> Default for Rates<N> {
    fn default() -> Self {
        Self { samples: VecDeque::with_capacity(KEEP) }
    }
}

impl<const N: usize> Rates<N> {
    /// Record the counters' values at `now`, unless a sample was taken less than a second ago.
    pub fn sample(&mut self, now: MonoNanos, counters: [u64; N]) {
        if self.samples.back().is_some_and(|(at, _)| now.0 < at.0.saturating_add(SAMPLE_EVERY_NS)) {
            return;
        }
        self.samples.push_back((now, counters));
        if self.samples.len() > KEEP {
            self.samples.pop_front();
        }
    }

    /// Every sample kept, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &(MonoNanos, [u64; N])> {
        self.samples.iter()
    }

    /// Counter `index`'s rate per second over the last `window_s` seconds, given its value
    /// `current` at `now`. Younger than the window, the rate is over the time since the
    /// first sample; with no sample yet, 0.
    #[must_use]
    pub fn per_second(&self, now: MonoNanos, window_s: u64, index: usize, current: u64) -> f64 {
        let window_ns = window_s.saturating_mul(1_000_000_000);
        // The counter at the window's start is the newest sample's at or before it.
        let before_start = now
            .0
            .checked_sub(window_ns)
            .and_then(|start| self.samples.iter().rev().find(|(at, _)| at.0 <= start));
        let (base, span_ns) = match before_start {
            Some((_, values)) => (values, window_ns),
            None => match self.samples.front() {
                Some((at, values)) => (values, now.0.saturating_sub(at.0)),
                None => return 0.0,
            },
        };
        if span_ns == 0 {
            return 0.0;
        }
        let moved = current.saturating_sub(base.get(index).copied().unwrap_or(current));
        #[allow(clippy::cast_precision_loss)] // a rate, not an exact count
        let rate = moved as f64 * 1e9 / span_ns as f64;
        rate
    }

    /// RocketMQ's three-window form, "<10 s> <1 min> <10 min>", in Java's double notation.
    #[must_use]
    pub fn three_windows(&self, now: MonoNanos, index: usize, current: u64) -> String {
        let [a, b, c] = [10, 60, 600].map(|window| self.per_second(now, window, index, current));
        format!("{a:?} {b:?} {c:?}")
    }
}

/// One day, ms.
const DAY_MS: i64 = 86_400_000;

/// The counters at the start of today and of yesterday, for RocketMQ's
/// `msgPutTotalTodayMorning` / `msgPutTotalYesterdayMorning` and their get twins, from which
/// `mqadmin` works out today's and yesterday's traffic. Days are UTC days (RocketMQ uses the
/// JVM's time zone). Counters start at zero at boot, so the day the broker starts counts
/// from its boot.
#[derive(Debug, Clone)]
pub struct DayMarks<const N: usize> {
    day: Option<i64>,
    today: [u64; N],
    yesterday: [u64; N],
}

impl<const N: usize> Default for DayMarks<N> {
    fn default() -> Self {
        Self { day: None, today: [0; N], yesterday: [0; N] }
    }
}

impl<const N: usize> DayMarks<N> {
    /// Note the counters at wall time `wall`; the first observation in a new day marks
    /// its morning. A backward clock step changes nothing.
    pub fn observe(&mut self, wall: UnixMillis, counters: [u64; N]) {
        let day = wall.0.div_euclid(DAY_MS);
        match self.day {
            None => self.day = Some(day),
            Some(seen) if day > seen => {
                // After a gap of more than a day, yesterday saw nothing.
                self.yesterday = if day == seen + 1 { self.today } else { counters };
                self.today = counters;
                self.day = Some(day);
            }
            Some(_) => {}
        }
    }

    /// The counters at the start of today.
    #[must_use]
    pub fn today(&self) -> [u64; N] {
        self.today
    }

    /// The counters at the start of yesterday.
    #[must_use]
    pub fn yesterday(&self) -> [u64; N] {
        self.yesterday
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> MonoNanos {
        MonoNanos(s * 1_000_000_000)
    }

    #[test]
    fn a_steady_rate_reads_the_same_over_every_window() {
        let mut rates = Rates::<1>::default();
        for s in 0..=700 {
            rates.sample(at(s), [s * 50]);
        }
        let now = at(700);
        for window in [10, 60, 600] {
            assert!((rates.per_second(now, window, 0, 35_000) - 50.0).abs() < 1e-9, "window {window}");
        }
        assert_eq!(rates.three_windows(now, 0, 35_000), "50.0 50.0 50.0");
        assert!(rates.samples.len() <= KEEP, "bounded");
    }

    #[test]
    fn a_quiet_spell_without_samples_counts_as_no_traffic() {
        let mut rates = Rates::<1>::default();
        rates.sample(at(0), [0]);
        rates.sample(at(1), [100]);
        // Nothing happens for an hour; then 100 more messages in the last 5 s.
        rates.sample(at(3_601 + 3_595), [100]);
        let now = at(3_601 + 3_600);
        assert!((rates.per_second(now, 10, 0, 200) - 10.0).abs() < 1e-9);
        assert!((rates.per_second(now, 600, 0, 200) - 100.0 / 600.0).abs() < 1e-9);
    }

    #[test]
    fn younger_than_the_window_the_rate_is_over_the_time_since_the_first_sample() {
        let mut rates = Rates::<2>::default();
        assert_eq!(rates.per_second(at(5), 10, 0, 7), 0.0, "no sample yet");
        rates.sample(at(0), [0, 0]);
        rates.sample(at(0), [9, 9]); // less than a second later: not taken
        assert!((rates.per_second(at(4), 600, 1, 40) - 10.0).abs() < 1e-9);
        assert_eq!(rates.three_windows(at(0), 0, 5), "0.0 0.0 0.0", "no time has passed");
    }

    #[test]
    fn day_marks_move_at_midnight_and_ignore_a_backward_step() {
        let mut marks = DayMarks::<1>::default();
        let noon = 10 * DAY_MS + DAY_MS / 2;
        marks.observe(UnixMillis(noon), [5]);
        assert_eq!((marks.today(), marks.yesterday()), ([0], [0]), "the boot day counts from boot");
        marks.observe(UnixMillis(noon + DAY_MS / 2 - 1), [40]);
        marks.observe(UnixMillis(noon + DAY_MS / 2 + 10_000), [42]);
        assert_eq!((marks.today(), marks.yesterday()), ([42], [0]));
        marks.observe(UnixMillis(noon), [43]); // the clock stepped back a day
        assert_eq!((marks.today(), marks.yesterday()), ([42], [0]));
        marks.observe(UnixMillis(noon + DAY_MS + DAY_MS / 2), [90]);
        assert_eq!((marks.today(), marks.yesterday()), ([90], [42]));
        marks.observe(UnixMillis(noon + 4 * DAY_MS), [95]); // days without a single observation
        assert_eq!((marks.today(), marks.yesterday()), ([95], [95]));
    }
}
