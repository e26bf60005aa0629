//! Fault coverage: how often each fault and interesting state actually happened in a batch
//! of runs. A batch where some count stays zero did not test what it claims to (a fault
//! switched off by accident), and the seed runner fails it.

use std::collections::BTreeMap;

/// Every counter the seed runner requires to be non-zero over a full batch.
pub const REQUIRED: &[&str] = &[
    "broker_kill",
    "broker_kill_with_io_in_flight",
    "power_loss_torn_page",
    "power_loss_lost_page",
    "power_loss_corrupt_page",
    "process_kill",
    "consumer_kill",
    "namesrv_kill",
    "broker_pause",
    "partition",
    "one_way_partition",
    "network_latency",
    "reset_before_reply",
    "reset_mid_request",
    "split_write",
    "coalesced_write",
    "disk_latency",
    "disk_write_eio",
    "disk_enospc",
    "fsync_failure",
    "bit_rot_read",
    "bit_rot_refused",
    "store_repaired",
    "retention_deleted",
    "clock_offset",
    "clock_drift",
    "clock_step_forward",
    "clock_step_backward",
    "producer_retry",
    "consumer_moved",
    "fault_free_run",
    "group_run",
    "group_consumer_join",
    "group_consumer_leave",
    "group_retry_delivery",
    "group_dead_letter",
    "group_lite_poll",
    "group_owner_sample",
    "timing_delay_delivered",
    "timing_timer_delivered",
    "tx_commit_delivered",
    "tx_check",
    "tx_discard",
    "ha_run",
    "ha_sync_run",
    "ha_master_kill",
    "ha_slave_kill",
    "ha_failover",
    "ha_broker_partition",
    "ha_broker_controller_partition",
    "ha_controller_partition",
    "ha_master_isolated_then_killed",
    "ha_controller_power_loss",
    "ha_controller_group_power_loss",
];

/// Named counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage(BTreeMap<String, u64>);

impl Coverage {
    /// Count one more `what`.
    pub fn bump(&mut self, what: &str) {
        self.add(what, 1);
    }

    /// Count `n` more `what`.
    pub fn add(&mut self, what: &str, n: u64) {
        if n > 0 {
            *self.0.entry(what.to_owned()).or_default() += n;
        }
    }

    /// Add another run's counts.
    pub fn merge(&mut self, other: &Coverage) {
        for (what, n) in &other.0 {
            self.add(what, *n);
        }
    }

    /// The count of `what`.
    #[must_use]
    pub fn get(&self, what: &str) -> u64 {
        self.0.get(what).copied().unwrap_or(0)
    }

    /// Required counters that stayed zero.
    #[must_use]
    pub fn missing(&self) -> Vec<&'static str> {
        REQUIRED.iter().copied().filter(|what| self.get(what) == 0).collect()
    }

    /// Every counter, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_counter_is_reported_missing() {
        let mut all = Coverage::default();
        for what in REQUIRED {
            all.bump(what);
        }
        assert!(all.missing().is_empty());
        let mut some = Coverage::default();
        some.add("broker_kill", 3);
        some.add("partition", 0);
        assert!(some.missing().contains(&"partition"));
        assert!(!some.missing().contains(&"broker_kill"));
        all.merge(&some);
        assert_eq!(all.get("broker_kill"), 4);
    }
}
