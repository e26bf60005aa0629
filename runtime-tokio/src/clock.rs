//! The clocks the driver reads for its state machine: the one seam besides the disk where
//! the simulator swaps in its own (per-node skew, drift and steps) without touching the loop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_core::io::{MonoNanos, Now, UnixMillis};
use tokio::time::Instant;

/// A node's clock: a monotonic time for deadlines and a wall time for timestamps.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, monotonic and wall.
    fn now(&self) -> Now;
    /// The monotonic time alone: what stamps each input's arrival, where a second read of
    /// the wall clock per input showed in the profile.
    fn mono(&self) -> MonoNanos {
        self.now().mono
    }
    /// The runtime instant at which the monotonic clock reads `at` (what the loop sleeps until).
    fn instant(&self, at: MonoNanos) -> Instant;
}

/// The process's own clocks: the runtime's `Instant` and the system's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock whose monotonic zero is now.
    #[must_use]
    pub fn start() -> Self {
        Self { start: Instant::now() }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Now { mono: self.mono(), wall: UnixMillis(i64::try_from(wall).unwrap_or(i64::MAX)) }
    }

    fn mono(&self) -> MonoNanos {
        MonoNanos(u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: MonoNanos) -> Instant {
        self.start + Duration::from_nanos(at.0)
    }
}
