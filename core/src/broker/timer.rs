//! Timed delivery at any time (RocketMQ 5.x's timer messages): what a send's `TIMER_*`
//! properties ask for, and where such a message waits.
//!
//! A timed message is stored in [`TIMER_TOPIC`] queue 0 with `TIMER_OUT_MS` (its due time)
//! and its real topic and queue in `REAL_TOPIC`/`REAL_QID`; the ConsumeQueue entry's tags
//! code carries the due time, so the pending set can be rebuilt from the queue alone.

use crate::protocol::message::properties::{self, keys};

pub use crate::store::consume_queue::TIMER_TOPIC;
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
/// `now_ms`: `None` if it has none. Precedence as in RocketMQ: `TIMER_DELAY_SEC`, then
/// `TIMER_DELAY_MS`, then `TIMER_DELIVER_MS` (absolute). A due time already past is allowed
/// (the caller stores the message at once); one beyond `max_delay_ms` is refused.
pub fn deliver_at(given: &[u8], now_ms: i64, max_delay_ms: u64) -> Result<Option<i64>, TimerError> {
    let read = |key: &'static str| -> Result<Option<i64>, TimerError> {
        let Some(raw) = properties::find(given, key) else { return Ok(None) };
        let text = String::from_utf8_lossy(raw);
        text.trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| TimerError::NotANumber { key, value: text.into_owned() })
    };
    let due = if let Some(seconds) = read(keys::TIMER_DELAY_SEC)? {
        now_ms.saturating_add(seconds.saturating_mul(1_000))
    } else if let Some(millis) = read(keys::TIMER_DELAY_MS)? {
        now_ms.saturating_add(millis)
    } else if let Some(at) = read(keys::TIMER_DELIVER_MS)? {
        at
    } else {
        return Ok(None);
    };
    let delay_ms = due.saturating_sub(now_ms);
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
        let now = 1_790_000_000_000;
        let max = DEFAULT_MAX_DELAY_MS;
        assert_eq!(deliver_at(&props(&[("TAGS", "a")]), now, max), Ok(None));
        let both = props(&[(keys::TIMER_DELIVER_MS, "5"), (keys::TIMER_DELAY_SEC, "3")]);
        assert_eq!(deliver_at(&both, now, max), Ok(Some(now + 3_000)));
        assert_eq!(deliver_at(&props(&[(keys::TIMER_DELAY_MS, "250")]), now, max), Ok(Some(now + 250)));
        let past = props(&[(keys::TIMER_DELIVER_MS, &(now - 10).to_string())]);
        assert_eq!(deliver_at(&past, now, max), Ok(Some(now - 10)));
    }

    #[test]
    fn beyond_the_maximum_negative_or_garbled_is_refused() {
        let now = 1_790_000_000_000;
        let max = DEFAULT_MAX_DELAY_MS;
        let forty_days = props(&[(keys::TIMER_DELAY_SEC, &(40 * 86_400).to_string())]);
        assert_eq!(deliver_at(&forty_days, now, max), Ok(Some(now + 40 * 86_400_000)));
        let later = props(&[(keys::TIMER_DELIVER_MS, &(now + 40 * 86_400_000 + 1).to_string())]);
        assert!(matches!(deliver_at(&later, now, max), Err(TimerError::OutOfRange { .. })));
        let negative = props(&[(keys::TIMER_DELAY_MS, "-5")]);
        assert!(matches!(deliver_at(&negative, now, max), Err(TimerError::OutOfRange { .. })));
        let garbled = props(&[(keys::TIMER_DELAY_SEC, "soon")]);
        let error = deliver_at(&garbled, now, max).unwrap_err();
        assert!(error.to_string().contains("TIMER_DELAY_SEC"), "{error}");
    }
}
