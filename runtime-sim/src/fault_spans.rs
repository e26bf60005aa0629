//! What the history's fault descriptions say, for the checkers: when a fault ends, whether
//! it took a broker down, and, in controller-mode seeds, which replica a fault names and how
//! old a new master's copy of its predecessor's metadata may be.

use crate::history::MASTER_CHANGED;

/// How long a partition holds traffic up after it is lifted. madsim retries a clogged
/// chunk with a backoff that doubles from 1 ms up to 10 s, and the chunks behind it wait:
/// a connection clogged for a few seconds (or by two partitions in a row) delivers up to
/// 10 s after the last one ends (seed 16135798763347326538: requests sent 1.4 s after a
/// partition lifted arrived 7 s later).
pub(crate) const CLOG_RETRY_MAX_MS: u64 = 10_000;

/// When a fault that began at `at` ended: its description says how long it lasts
/// (`"… for 1.049s"`, `"… for 167ms"`, `"… for 2000 ms"`), plus madsim's retry backoff for
/// a partition, or a master's lease for the controllers' power loss (a master that lost
/// its lease takes writes again only once the returned group has a leader that vouches
/// for it); one without a length is an instant.
pub(crate) fn fault_end(at: u64, what: &str) -> u64 {
    let tail = if what.contains("partition") {
        CLOG_RETRY_MAX_MS
    } else if what.contains("power loss of controller") {
        keel_core::broker::controller_link::HEARTBEAT_TIMEOUT_MS
    } else {
        0
    };
    described_end(at, what).saturating_add(tail)
}

/// When a fault ended by its description alone.
fn described_end(at: u64, what: &str) -> u64 {
    let Some((_, length)) = what.rsplit_once(" for ") else { return at };
    let length = length.trim();
    let split = length.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(length.len());
    let (number, unit) = length.split_at(split);
    let Ok(value) = number.parse::<f64>() else { return at };
    let ms = match unit.trim() {
        "s" => value * 1_000.0,
        "ms" => value,
        _ => 0.0,
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a few seconds, ms
    let ms = ms.ceil() as u64;
    at.saturating_add(ms)
}

/// Whether a fault event is the broker going down (a kill, a power loss, a fatal stop), or,
/// in controller-mode seeds, a master cut off (`(master: true)`, a failover may follow) or
/// replaced.
pub(crate) fn is_broker_restart(what: &str) -> bool {
    what.contains("broker power loss")
        || what.contains("(master: true)")
        || what.starts_with(crate::history::MASTER_CHANGED)
        || what.contains("broker process killed")
        || what.contains("broker stopped")
        || what.contains("kill broker")
        || what.starts_with(crate::history::DISK_ERROR_REPAIR)
}

/// How old a slave's copy of its master's metadata may be when nothing kept it from the
/// master: a sync round's interval plus a redial and the round itself. A repeat of a
/// delivery (a delay level's progress is metadata) made that long before a failover is
/// excused.
pub(crate) const METADATA_STALE_MS: u64 = 15_000;

/// A failover in a controller-mode seed: when the observer saw it, the set, and the new
/// master as fault descriptions name it (`"broker-a broker 2"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failover {
    pub at: u64,
    pub set: String,
    pub master: String,
}

impl Failover {
    /// The failover a `"{MASTER_CHANGED}: broker-a broker 2 in epoch …"` fault records.
    pub(crate) fn parse(at: u64, what: &str) -> Option<Self> {
        let rest = what.strip_prefix(MASTER_CHANGED)?.strip_prefix(": ")?;
        let (master, _) = rest.split_once(" in epoch ")?;
        let (set, _) = master.split_once(" broker ")?;
        Some(Self { at, set: set.to_owned(), master: master.to_owned() })
    }

    /// The earliest a delivery the new master repeats may have been made: its metadata is
    /// at most [`METADATA_STALE_MS`] old, unless a fault naming it (a kill, a partition)
    /// kept it from its master, in which case its last copy may predate that fault by as
    /// much. `spans` are faults as (start, end, description).
    pub(crate) fn stale_since(&self, spans: &[(u64, u64, String)]) -> u64 {
        let mut since = self.at.saturating_sub(METADATA_STALE_MS);
        loop {
            let earlier = spans
                .iter()
                .filter(|(start, end, what)| *end >= since && *start < self.at && names(what, &self.master))
                .map(|(start, _, _)| start.saturating_sub(METADATA_STALE_MS))
                .min();
            match earlier {
                Some(earlier) if earlier < since => since = earlier,
                _ => return since,
            }
        }
    }
}

/// Whether `what` names `broker` (`"broker-a broker 2"`), not one whose id merely starts
/// the same (`"broker-a broker 21"`).
fn names(what: &str, broker: &str) -> bool {
    what.match_indices(broker)
        .any(|(at, _)| !what[at + broker.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_lasts_as_long_as_its_description_says() {
        assert_eq!(fault_end(100, "pause broker for 1.049s"), 1_149);
        assert_eq!(fault_end(100, "pause broker for 167ms"), 267);
        assert_eq!(fault_end(100, "scripted: kill name server for 2000 ms"), 2_100);
        assert_eq!(fault_end(100, "broker power loss with 3 IOs in flight: [..]"), 100);
        // A partition holds traffic up for as long as madsim's retry backoff after it.
        assert_eq!(fault_end(100, "one-way partition: broker out for 3.301s"), 13_401);
        assert_eq!(fault_end(100, "partition broker | 5 for 39ms"), 10_139);
        // The brokers wait out a lease for the returned group to vouch for their masters.
        assert_eq!(fault_end(100, "power loss of controller n0, n1, n2 for 2s"), 12_100);
    }

    #[test]
    fn a_failover_repeats_what_its_new_master_may_not_have_copied() {
        let what = format!("{MASTER_CHANGED}: broker-a broker 2 in epoch 131072");
        let failover = Failover::parse(34_000, &what).unwrap();
        assert_eq!(failover.set, "broker-a");
        assert_eq!(failover.master, "broker-a broker 2");
        assert_eq!(Failover::parse(34_000, "kill broker-a broker 1 (the isolated master)"), None);
        // Undisturbed, the new master copied its predecessor's metadata recently.
        assert_eq!(failover.stale_since(&[]), 19_000);
        // Cut off from 24 s to 32 s, its last copy may be from before 24 s.
        let partition = |what: &str| (24_000, 41_875, what.to_owned());
        let cut_off = [partition("partition broker-a broker 2 (master: false) from everyone for 7.875s")];
        assert_eq!(failover.stale_since(&cut_off), 9_000);
        // A fault of another replica, or of one whose id only starts the same, does not.
        let others = [
            partition("partition broker-a broker 3 (master: false) from everyone for 7.875s"),
            partition("partition broker-a broker 21 (master: false) from everyone for 7.875s"),
            partition("partition broker-b broker 2 (master: false) from everyone for 7.875s"),
        ];
        assert_eq!(failover.stale_since(&others), 19_000);
        // Faults in a row chain back: a kill before the partition ended within its window.
        let chained = [
            cut_off[0].clone(),
            (5_000, 15_290, "kill broker-a broker 2 (master: false, power loss) for 10.29s".to_owned()),
        ];
        assert_eq!(failover.stale_since(&chained), 0);
    }
}
