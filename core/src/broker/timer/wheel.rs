//! A hierarchical timing wheel: timers by tick, each inserted and expired in constant time
//! whatever else is pending, whether a million are due in one second or spread over forty
//! days.
//!
//! Eleven levels of 64 slots. Level `L` slots are `64^L` ticks wide, so the wheel spans
//! every 64-bit tick (only the low levels are ever busy: at a tick a second, 40 days fit in
//! four). A timer goes to the level
//! of the highest 6-bit digit in which its tick differs from the wheel's current tick, in
//! the slot of its own digit there. So every timer in a level-`L` slot shares all digits
//! above `L` with the current tick and lies in that slot's range. Advancing takes the
//! occupied slot that starts first: at level 0 its timers are due; above, its timers are
//! spread to lower levels (cascaded), each timer moving at most once per level in its life. An occupancy bitmap per level finds that slot
//! without scanning empty ones.
//!
//! Timers are never early: a tick's timers come out only once the wheel is advanced past
//! the tick, i.e. when a caller's clock has reached the next tick.

/// Slots per level (one 6-bit digit of the tick).
const SLOTS: usize = 64;
/// Bits per level.
const BITS: u32 = 6;
/// Levels: enough six-bit digits for any 64-bit tick.
const LEVELS: usize = 11;

/// One level: its slots and which of them hold timers.
#[derive(Debug)]
struct Level<T> {
    slots: Vec<Vec<(u64, T)>>,
    occupied: u64,
}

impl<T> Level<T> {
    fn new() -> Self {
        Self { slots: (0..SLOTS).map(|_| Vec::new()).collect(), occupied: 0 }
    }
}

/// Timers keyed by tick.
#[derive(Debug)]
pub struct TimerWheel<T> {
    /// Every timer before this tick has been handed out.
    current: u64,
    levels: Vec<Level<T>>,
    /// Timers inserted for a tick already past: out on the next advance.
    overdue: Vec<(u64, T)>,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose time starts at `current`.
    #[must_use]
    pub fn new(current: u64) -> Self {
        Self { current, levels: (0..LEVELS).map(|_| Level::new()).collect(), overdue: Vec::new(), len: 0 }
    }

    /// Timers pending.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick before which everything has been handed out.
    #[must_use]
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Add a timer for `tick` (one already past comes out on the next advance).
    pub fn insert(&mut self, tick: u64, item: T) {
        self.len += 1;
        self.place(tick, item);
    }

    fn place(&mut self, tick: u64, item: T) {
        if tick < self.current {
            self.overdue.push((tick, item));
            return;
        }
        let level = level_of(tick ^ self.current);
        let slot = digit(tick, level);
        // Eleven levels cover every 64-bit tick, so both lookups always succeed.
        if let Some(level) = self.levels.get_mut(level) {
            if let Some(list) = level.slots.get_mut(slot) {
                list.push((tick, item));
                level.occupied |= 1 << slot;
            }
        }
    }

    /// The earliest tick at which [`advance`](Self::advance) may have work: a level-0
    /// slot's tick, or the start of a higher slot to cascade. `None` if nothing is pending.
    #[must_use]
    pub fn next_tick(&self) -> Option<u64> {
        if !self.overdue.is_empty() {
            return Some(self.current);
        }
        self.first_slot().map(|(_, _, start)| start)
    }

    /// The occupied slot that starts first: (level, slot, first tick of its range). On a
    /// tie the higher level comes first, so its timers are cascaded before the lower slot's
    /// timers come out. (A higher slot can start before a lower one once the current tick
    /// has moved into its range.)
    fn first_slot(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for (index, level) in self.levels.iter().enumerate() {
            if level.occupied == 0 {
                continue;
            }
            let slot = level.occupied.trailing_zeros() as usize;
            let width_bits = BITS * level_bits(index);
            let block = self
                .current
                .checked_shr(width_bits + BITS)
                .unwrap_or(0)
                .checked_shl(width_bits + BITS)
                .unwrap_or(0);
            let start = block | ((slot as u64) << width_bits);
            if best.is_none_or(|(_, _, first)| start <= first) {
                best = Some((index, slot, start));
            }
        }
        best
    }

    /// Move time to `now` (exclusive): every timer whose tick is before `now` is handed to
    /// `due`, in tick order (timers inserted for a past tick first).
    pub fn advance(&mut self, now: u64, mut due: impl FnMut(u64, T)) {
        for (tick, item) in core::mem::take(&mut self.overdue) {
            self.len -= 1;
            due(tick, item);
        }
        while let Some((level, slot, start)) = self.first_slot() {
            if start >= now {
                break;
            }
            let Some(lvl) = self.levels.get_mut(level) else { break };
            lvl.occupied &= !(1 << slot);
            let items = lvl.slots.get_mut(slot).map(core::mem::take).unwrap_or_default();
            self.current = self.current.max(start);
            if level == 0 {
                self.current = start + 1;
                for (tick, item) in items {
                    self.len -= 1;
                    due(tick, item);
                }
            } else {
                for (tick, item) in items {
                    self.place(tick, item);
                }
                // Cascaded timers due before `now` come out in the following turns.
                for (tick, item) in core::mem::take(&mut self.overdue) {
                    self.len -= 1;
                    due(tick, item);
                }
            }
        }
        // Nothing pending before `now`; moving `current` up to it keeps every placement
        // valid, since no occupied slot starts before it.
        let next = self.first_slot().map_or(now, |(_, _, start)| start.min(now));
        self.current = self.current.max(next);
    }
}

/// The level of a timer whose tick differs from the current tick in the bits `diff`.
fn level_of(diff: u64) -> usize {
    if diff == 0 {
        return 0;
    }
    let highest = 63 - diff.leading_zeros();
    let Ok(level) = usize::try_from(highest / BITS) else { panic!("timer wheel level of {diff}") };
    level
}

/// A level index as a shift factor (there are at most 64 / BITS levels).
fn level_bits(level: usize) -> u32 {
    let Ok(bits) = u32::try_from(level) else { panic!("timer wheel level {level}") };
    bits
}

/// The tick's digit at `level`: below SLOTS, a slot index.
fn digit(tick: u64, level: usize) -> usize {
    let shift = BITS * level_bits(level);
    let Ok(slot) = usize::try_from((tick >> shift) & (SLOTS as u64 - 1)) else {
        panic!("slot of tick {tick}")
    };
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(wheel: &mut TimerWheel<u32>, now: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        wheel.advance(now, |tick, item| out.push((tick, item)));
        out
    }

    #[test]
    fn timers_come_out_once_their_tick_is_past_never_before() {
        let mut wheel = TimerWheel::new(1_000);
        for (i, tick) in [1_000, 1_001, 1_063, 1_064, 5_000, 1_000 + 40 * 86_400].iter().enumerate() {
            wheel.insert(*tick, u32::try_from(i).unwrap());
        }
        assert_eq!(wheel.len(), 6);
        assert_eq!(drain(&mut wheel, 1_000), []);
        assert_eq!(drain(&mut wheel, 1_001), [(1_000, 0)]);
        assert_eq!(drain(&mut wheel, 1_064), [(1_001, 1), (1_063, 2)]);
        assert_eq!(drain(&mut wheel, 4_999), [(1_064, 3)]);
        assert_eq!(drain(&mut wheel, 5_001), [(5_000, 4)]);
        assert_eq!(drain(&mut wheel, 1_000 + 40 * 86_400), []);
        assert_eq!(drain(&mut wheel, 1_001 + 40 * 86_400), [(1_000 + 40 * 86_400, 5)]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn a_timer_for_a_past_tick_comes_out_on_the_next_advance() {
        let mut wheel = TimerWheel::new(100);
        wheel.insert(50, 7);
        assert_eq!(wheel.next_tick(), Some(100));
        assert_eq!(drain(&mut wheel, 100), [(50, 7)]);
    }

    #[test]
    fn matches_a_sorted_model_over_random_inserts_and_advances() {
        // A small deterministic generator: no dependency, no seed from outside needed.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut wheel = TimerWheel::new(0);
        let mut model: Vec<(u64, u32)> = Vec::new();
        let mut now = 0;
        for round in 0..2_000u32 {
            for k in 0..(next() % 5) {
                let span = [10, 100, 5_000, 300_000, 3_500_000][usize::try_from(next() % 5).unwrap()];
                let tick = now + next() % span;
                let item = round * 8 + u32::try_from(k).unwrap();
                wheel.insert(tick, item);
                model.push((tick, item));
            }
            now += [1, 3, 70, 4_000, 250_000][usize::try_from(next() % 5).unwrap()];
            let mut got = drain(&mut wheel, now);
            let mut want: Vec<(u64, u32)> = model.iter().copied().filter(|(t, _)| *t < now).collect();
            model.retain(|(t, _)| *t >= now);
            assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "out of tick order: {got:?}");
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "round {round} at {now}");
            assert_eq!(wheel.len(), model.len());
            if let Some(first) = model.iter().map(|(t, _)| *t).min() {
                assert!(
                    wheel.next_tick().is_some_and(|n| n <= first),
                    "next tick {:?} past a pending timer {first} (current {}, now {now}, levels {:?})",
                    wheel.next_tick(),
                    wheel.current,
                    wheel.levels.iter().map(|l| l.occupied).collect::<Vec<_>>()
                );
            }
        }
    }
}
