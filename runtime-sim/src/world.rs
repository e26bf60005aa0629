//! The simulated world's shared state: the history, the fault counters and the run's phase.
//! It lives outside every node (madsim runs all nodes on one thread, so a mutex is never
//! contended), survives their crashes, and is what the checkers read at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::coverage::Coverage;
use crate::history::{Event, History};

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Faults are being injected.
    Faults,
    /// Faults stopped at `since_ms`; everything must converge.
    Healing {
        /// When healing began, milliseconds since the start.
        since_ms: u64,
    },
}

#[derive(Debug)]
struct State {
    history: History,
    coverage: Coverage,
    phase: Phase,
    producers_stop: bool,
    broker_down: Option<String>,
    next_session: u32,
    fault_free: bool,
}

/// Worlds not yet dropped in this process; a finished run must leave none behind.
static WORLDS_ALIVE: AtomicUsize = AtomicUsize::new(0);

/// How many worlds are alive in this process: after every run has returned, a non-zero
/// count means some task of a finished run outlived it (and leaks its whole state).
#[must_use]
pub fn worlds_alive() -> usize {
    WORLDS_ALIVE.load(Ordering::SeqCst)
}

impl Drop for State {
    fn drop(&mut self) {
        WORLDS_ALIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The shared state; clone to share.
#[derive(Debug, Clone)]
pub struct World(Arc<Mutex<State>>);

impl Default for World {
    fn default() -> Self {
        WORLDS_ALIVE.fetch_add(1, Ordering::SeqCst);
        Self(Arc::new(Mutex::new(State {
            history: History::default(),
            coverage: Coverage::default(),
            phase: Phase::Faults,
            producers_stop: false,
            broker_down: None,
            next_session: 0,
            fault_free: false,
        })))
    }
}

impl World {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Record `event` at `at_ms`.
    pub fn record(&self, at_ms: u64, event: Event) {
        self.with(|s| s.history.push(at_ms, event));
    }

    /// Count one more `what`.
    pub fn bump(&self, what: &str) {
        self.with(|s| s.coverage.bump(what));
    }

    /// Count `n` more `what`.
    pub fn add(&self, what: &str, n: u64) {
        self.with(|s| s.coverage.add(what, n));
    }

    /// A copy of the history so far.
    #[must_use]
    pub fn history(&self) -> History {
        self.with(|s| s.history.clone())
    }

    /// Run `f` on the history so far, without copying it.
    pub fn read_history<R>(&self, f: impl FnOnce(&History) -> R) -> R {
        self.with(|s| f(&s.history))
    }

    /// A copy of the counters so far.
    #[must_use]
    pub fn coverage(&self) -> Coverage {
        self.with(|s| s.coverage.clone())
    }

    /// The phase now.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.with(|s| s.phase)
    }

    /// Enter the healing phase at `at_ms`.
    pub fn heal(&self, at_ms: u64) {
        self.with(|s| {
            s.phase = Phase::Healing { since_ms: at_ms };
            s.history.push(at_ms, Event::Healed);
        });
    }

    /// Declare the run fault-free: then no operation may ever fail.
    pub fn set_fault_free(&self) {
        self.with(|s| s.fault_free = true);
    }

    /// Whether an operation started at `at_ms` must succeed: in a fault-free run always,
    /// otherwise once the system has been healed long enough (clogged chunks drain within
    /// madsim's 10 s retry cap).
    #[must_use]
    pub fn must_succeed(&self, at_ms: u64) -> bool {
        self.with(|s| {
            s.fault_free || matches!(s.phase, Phase::Healing { since_ms } if at_ms >= since_ms + 15_000)
        })
    }

    /// Tell producers to stop sending new messages.
    pub fn stop_producers(&self) {
        self.with(|s| s.producers_stop = true);
    }

    /// Whether producers should stop.
    #[must_use]
    pub fn producers_stopped(&self) -> bool {
        self.with(|s| s.producers_stop)
    }

    /// The broker process ended on its own (a fatal error): `why`.
    pub fn broker_down(&self, why: String) {
        self.with(|s| s.broker_down = Some(why));
    }

    /// Take the reason the broker went down, if it did (the restarter's job).
    pub fn take_broker_down(&self) -> Option<String> {
        self.with(|s| s.broker_down.take())
    }

    /// A new consumer session number.
    pub fn next_session(&self) -> u32 {
        self.with(|s| {
            s.next_session += 1;
            s.next_session
        })
    }
}
