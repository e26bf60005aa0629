//! `SimClock`: each simulated node's own clocks, since madsim has one global clock.
//!
//! - The monotonic clock counts true elapsed time scaled by a rate error (drift, in parts
//!   per million). It never steps, as `CLOCK_MONOTONIC` never does.
//! - The wall clock is true wall time plus an offset that moves: a constant part, a linear
//!   drift, and steps forward or backward that the fault scheduler applies (an NTP jump, an
//!   operator's `date -s`).
//!
//! [`ClockSkew`] is the plain model, unit-tested in normal builds; the [`Clock`] the driver
//! reads is madsim-only glue over it.

use std::sync::{Arc, Mutex, PoisonError};

/// How one node's clocks differ from true time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockSkew {
    /// Constant wall offset, milliseconds.
    pub offset_ms: i64,
    /// Wall drift: milliseconds gained per 1,000,000 milliseconds of true time.
    pub wall_drift_ppm: i64,
    /// Monotonic rate error in parts per million (−1,000..1,000).
    pub mono_drift_ppm: i64,
    /// The sum of the steps applied so far, milliseconds.
    pub stepped_ms: i64,
    /// The highest wall reading a backward step left behind, if any: until the clock passes
    /// it again, a broker that holds messages by its wall clock is catching up.
    pub peak_ms: Option<i64>,
}

impl ClockSkew {
    /// The wall reading at true wall time `true_wall_ms`, `true_elapsed_ms` into the run.
    #[must_use]
    pub fn wall(&self, true_wall_ms: i64, true_elapsed_ms: i64) -> i64 {
        true_wall_ms + self.offset_ms + self.stepped_ms + true_elapsed_ms * self.wall_drift_ppm / 1_000_000
    }

    /// The monotonic reading after `true_ns` nanoseconds of true time.
    #[must_use]
    pub fn mono(&self, true_ns: u64) -> u64 {
        let ppm = self.mono_drift_ppm.clamp(-999_999, 999_999);
        let scaled = i128::from(true_ns) * i128::from(1_000_000 + ppm) / 1_000_000;
        u64::try_from(scaled.max(0)).unwrap_or(u64::MAX)
    }

    /// The true nanoseconds after which the monotonic clock reads `mono_ns` (the inverse of
    /// [`mono`](Self::mono), rounded up so a deadline is never woken early).
    #[must_use]
    pub fn true_ns_for(&self, mono_ns: u64) -> u64 {
        let ppm = i128::from(self.mono_drift_ppm.clamp(-999_999, 999_999));
        let rate = 1_000_000 + ppm;
        let t = (i128::from(mono_ns) * 1_000_000 + rate - 1) / rate;
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }
}

/// A node's skew, shared by the fault scheduler (which steps it) and the node's clock
/// (which reads it); it outlives restarts, as a machine's clock does.
#[derive(Debug, Clone, Default)]
pub struct SharedSkew(Arc<Mutex<ClockSkew>>);

impl SharedSkew {
    /// Share `skew`.
    #[must_use]
    pub fn new(skew: ClockSkew) -> Self {
        Self(Arc::new(Mutex::new(skew)))
    }

    /// The skew now.
    #[must_use]
    pub fn get(&self) -> ClockSkew {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Step the wall clock by `delta_ms` (negative: backward); it read `reading_ms` just
    /// before.
    pub fn step(&self, delta_ms: i64, reading_ms: i64) {
        let mut skew = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if delta_ms < 0 {
            skew.peak_ms = Some(skew.peak_ms.map_or(reading_ms, |peak| peak.max(reading_ms)));
        }
        skew.stepped_ms += delta_ms;
    }

    /// Stop drifting from now on (healing); the offset reached so far stays.
    pub fn freeze_drift(&self, true_elapsed_ms: i64) {
        let mut skew = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        skew.offset_ms += true_elapsed_ms * skew.wall_drift_ppm / 1_000_000;
        skew.wall_drift_ppm = 0;
    }
}

#[cfg(madsim)]
pub use glue::SimClock;

#[cfg(madsim)]
mod glue {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use keel_core::io::{MonoNanos, Now, UnixMillis};
    use keel_runtime_tokio::clock::Clock;
    use madsim::time::Instant;

    use super::SharedSkew;

    /// A node's clock under the simulator: true time seen through the node's skew.
    #[derive(Debug, Clone)]
    pub struct SimClock {
        skew: SharedSkew,
        /// When this process started (its monotonic zero).
        start: Instant,
        /// When the run started (what wall drift counts from).
        epoch: Instant,
    }

    impl SimClock {
        /// A clock whose monotonic zero is now; `epoch` is the run's start.
        #[must_use]
        pub fn start(skew: SharedSkew, epoch: Instant) -> Self {
            Self { skew, start: Instant::now(), epoch }
        }

        /// The highest wall reading so far (now, or one a backward step left behind).
        #[must_use]
        pub fn high_water_ms(&self) -> i64 {
            let wall = self.now().wall.0;
            self.skew.get().peak_ms.map_or(wall, |peak| peak.max(wall))
        }
    }

    impl SharedSkew {
        /// The wall clock this skew gives now, in a run that began at `epoch` (what the
        /// node reads, as the clients note it beside what they do).
        #[must_use]
        pub fn wall_ms(&self, epoch: Instant) -> i64 {
            SimClock::start(self.clone(), epoch).now().wall.0
        }

        /// The highest that wall clock has read so far.
        #[must_use]
        pub fn high_ms(&self, epoch: Instant) -> i64 {
            SimClock::start(self.clone(), epoch).high_water_ms()
        }
    }

    impl Clock for SimClock {
        fn now(&self) -> Now {
            let skew = self.skew.get();
            let true_wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let true_wall = i64::try_from(true_wall).unwrap_or(i64::MAX);
            let elapsed = i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX);
            let mono = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            Now { mono: MonoNanos(skew.mono(mono)), wall: UnixMillis(skew.wall(true_wall, elapsed)) }
        }

        fn instant(&self, at: MonoNanos) -> Instant {
            self.start + Duration::from_nanos(self.skew.get().true_ns_for(at.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_drifts_but_never_steps_and_inverts_without_waking_early() {
        for ppm in [-1000, -37, 0, 1, 500, 1000] {
            let skew = ClockSkew { mono_drift_ppm: ppm, stepped_ms: -50_000, ..ClockSkew::default() };
            let mut last = 0;
            for t in (0..10_000_000_000u64).step_by(7_777_777) {
                let m = skew.mono(t);
                assert!(m >= last, "monotonic");
                last = m;
                let back = skew.true_ns_for(m);
                assert!(skew.mono(back) >= m, "woken early at ppm {ppm}");
                assert!(back <= t + 2, "inverse is tight");
            }
        }
        let fast = ClockSkew { mono_drift_ppm: 1000, ..ClockSkew::default() };
        assert_eq!(fast.mono(1_000_000_000), 1_001_000_000);
    }

    #[test]
    fn the_wall_clock_follows_offset_drift_and_steps() {
        let shared =
            SharedSkew::new(ClockSkew { offset_ms: 250, wall_drift_ppm: 100, ..ClockSkew::default() });
        assert_eq!(shared.get().wall(1_000_000, 0), 1_000_250);
        assert_eq!(shared.get().wall(1_000_000, 10_000_000), 1_001_250);
        shared.step(-3_600_000, 1_000_250);
        assert_eq!(shared.get().wall(1_000_000, 0), 1_000_250 - 3_600_000);
        assert_eq!(shared.get().peak_ms, Some(1_000_250), "the reading the step left behind");
        shared.freeze_drift(10_000_000);
        let frozen = shared.get();
        assert_eq!(frozen.wall_drift_ppm, 0);
        assert_eq!(frozen.wall(1_000_000, 20_000_000), 1_001_250 - 3_600_000);
    }
}
