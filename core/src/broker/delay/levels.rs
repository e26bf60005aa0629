//! Delay levels (`messageDelayLevel`): a message sent with `DELAY=n` is delivered to its
//! topic `delay(n)` after it was stored. Retries use them too: the k-th retry of a failed
//! message waits at level `2 + k`.

use core::fmt;

/// RocketMQ's default `messageDelayLevel`.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// The system topic where delayed messages wait: queue `level - 1` holds level `level`.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// The delay of each level, level 1 first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayLevels(Vec<u64>);

/// A `messageDelayLevel` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad messageDelayLevel entry {0:?}: want a number with a unit s, m, h or d")]
pub struct BadDelayLevel(pub String);

impl DelayLevels {
    /// Parse `"1s 5s 10s 30s 1m …"`: space-separated numbers, each with a unit.
    pub fn parse(text: &str) -> Result<Self, BadDelayLevel> {
        let mut levels = Vec::new();
        for word in text.split_whitespace() {
            let bad = || BadDelayLevel(word.to_owned());
            let split = word.len().checked_sub(1).ok_or_else(bad)?;
            let (number, unit) = (word.get(..split).ok_or_else(bad)?, word.get(split..).ok_or_else(bad)?);
            let unit_ms: u64 = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad()),
            };
            let count: u64 = number.parse().map_err(|_| bad())?;
            levels.push(count.checked_mul(unit_ms).ok_or_else(bad)?);
        }
        if levels.is_empty() {
            return Err(BadDelayLevel(text.to_owned()));
        }
        Ok(Self(levels))
    }

    /// The highest level.
    #[must_use]
    pub fn max_level(&self) -> i32 {
        i32::try_from(self.0.len()).unwrap_or(i32::MAX)
    }

    /// The level a requested one becomes: levels above the highest are clamped to it;
    /// `None` for 0 and below (not delayed).
    #[must_use]
    pub fn effective(&self, requested: i32) -> Option<i32> {
        (requested > 0).then(|| requested.min(self.max_level()))
    }

    /// The delay of `level` (clamped), ms; `None` for levels below 1.
    #[must_use]
    pub fn delay_ms(&self, level: i32) -> Option<u64> {
        let level = self.effective(level)?;
        self.0.get(usize::try_from(level - 1).ok()?).copied()
    }

    /// Every level, 1 up.
    pub fn levels(&self) -> impl Iterator<Item = i32> {
        1..=self.max_level()
    }
}

impl Default for DelayLevels {
    fn default() -> Self {
        Self::parse(DEFAULT_DELAY_LEVELS).unwrap_or_else(|_| Self(vec![1_000]))
    }
}

impl fmt::Display for DelayLevels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self
            .0
            .iter()
            .map(|ms| match ms {
                ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
                ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
                ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
                ms => format!("{}s", ms / 1_000),
            })
            .collect();
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_levels_are_rocketmqs() {
        let levels = DelayLevels::default();
        assert_eq!(levels.max_level(), 18);
        assert_eq!(levels.delay_ms(1), Some(1_000));
        assert_eq!(levels.delay_ms(3), Some(10_000));
        assert_eq!(levels.delay_ms(18), Some(7_200_000));
        // Above the highest level: clamped; zero and below: not delayed.
        assert_eq!(levels.delay_ms(99), Some(7_200_000));
        assert_eq!(levels.delay_ms(0), None);
        assert_eq!(levels.delay_ms(-1), None);
        assert_eq!(levels.to_string(), DEFAULT_DELAY_LEVELS);
    }

    #[test]
    fn the_retry_schedule_sums_to_rocketmqs_total() {
        // Retries 1..=16 wait at levels 3..=18: 4 h 45 m 40 s in all.
        let levels = DelayLevels::default();
        let total: u64 = (3..=18).filter_map(|level| levels.delay_ms(level)).sum();
        assert_eq!(total, ((4 * 60 + 45) * 60 + 40) * 1_000);
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["", "5", "5x", "s", "1s -2m", "99999999999999999999d"] {
            assert!(DelayLevels::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(DelayLevels::parse("2d 500s").unwrap().delay_ms(1), Some(172_800_000));
    }
}
