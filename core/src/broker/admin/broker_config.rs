//! The broker's settings for the operator tools: GET_BROKER_CONFIG answers the effective
//! configuration as properties text; UPDATE_BROKER_CONFIG changes, while the broker runs,
//! the settings that can change safely then ([`LIVE_KEYS`]) and refuses the rest by name.
//! A change lives in memory: the config file stays what the next start reads.

use super::Admin;
use crate::broker::consumers::{ok, Consumers};
use crate::broker::refusal::Refusal;
use crate::broker::shared::{Answer, Shared};
use crate::io::Now;
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::RemotingCommand;

/// The settings UPDATE_BROKER_CONFIG may change while the broker runs.
pub const LIVE_KEYS: [&str; 4] = [
    "autoCreateSubscriptionGroup",
    "slaveReadEnable",
    "whichBrokerWhenConsumeSlowly",
    "waitTimeMillsInSendQueue",
];

/// One accepted change.
enum Change {
    AutoCreateGroups(bool),
    SlaveRead(bool),
    SlowConsumeBroker(i64),
    SendQueueWaitMs(u64),
}

/// `key=value` lines (blank lines and `#` comments skipped), as Java's tools write them.
fn parse_properties(text: &str) -> Result<Vec<(&str, &str)>, Refusal> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| Refusal::InvalidParameter(format!("'{line}' is not a key=value line")))
        })
        .collect()
}

fn parse_change(key: &str, value: &str) -> Result<Change, Refusal> {
    let bad = || Refusal::InvalidParameter(format!("{key}={value}: not a value {key} takes"));
    let flag = || match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad()),
    };
    match key {
        "autoCreateSubscriptionGroup" => flag().map(Change::AutoCreateGroups),
        "slaveReadEnable" => flag().map(Change::SlaveRead),
        "whichBrokerWhenConsumeSlowly" => value.parse().map(Change::SlowConsumeBroker).map_err(|_| bad()),
        "waitTimeMillsInSendQueue" => value.parse().map(Change::SendQueueWaitMs).map_err(|_| bad()),
        _ => Err(Refusal::InvalidParameter(format!(
            "{key} cannot change while the broker runs (these can: {}); set it in the config file and restart",
            LIVE_KEYS.join(", ")
        ))),
    }
}

/// `text` with `key`'s line set to `value` (appended if absent).
fn with_setting(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut out: String = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some((k, _)) if k.trim() == key => {
                found = true;
                format!("{key}={value}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    if !found {
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

impl Admin {
    /// GET_BROKER_CONFIG: the settings as properties text, the version in `version`.
    pub(in crate::broker) fn on_get_broker_config(
        &self,
        shared: &Shared,
        request: &RemotingCommand,
    ) -> Answer {
        let version = json::to_body(&self.config_version, KeyStyle::Fastjson);
        let mut reply = ok(request).with_body(shared.config.settings_text.clone().into_bytes());
        reply.ext_fields.insert("version", String::from_utf8_lossy(&version));
        Ok(reply)
    }

    /// UPDATE_BROKER_CONFIG: every setting in the body is checked before any is applied.
    pub(in crate::broker) fn on_update_broker_config(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        request: &RemotingCommand,
    ) -> Answer {
        let text = std::str::from_utf8(&request.body)
            .map_err(|_| Refusal::InvalidParameter("the settings are not UTF-8 text".into()))?;
        let pairs = parse_properties(text)?;
        if pairs.is_empty() {
            return Err(Refusal::InvalidParameter("no setting to change".into()));
        }
        let changes: Vec<Change> = pairs.iter().map(|(k, v)| parse_change(k, v)).collect::<Result<_, _>>()?;
        for change in changes {
            match change {
                Change::AutoCreateGroups(on) => {
                    shared.config.auto_create_subscription_group = on;
                    consumers.groups.set_auto_create(on);
                }
                Change::SlaveRead(on) => shared.config.slave_read_enable = on,
                Change::SlowConsumeBroker(id) => shared.config.which_broker_when_consume_slowly = id,
                Change::SendQueueWaitMs(ms) => shared.config.send_queue_wait_ms = ms,
            }
        }
        for (key, value) in &pairs {
            shared.config.settings_text = with_setting(&shared.config.settings_text, key, value);
            tracing::info!(key, value, "broker setting changed");
        }
        self.config_version.bump(now.wall);
        Ok(ok(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_line_is_replaced_or_added() {
        let text = "brokerName=broker-a\nslaveReadEnable=false\n";
        assert_eq!(
            with_setting(text, "slaveReadEnable", "true"),
            "brokerName=broker-a\nslaveReadEnable=true\n"
        );
        assert_eq!(with_setting(text, "x", "1"), "brokerName=broker-a\nslaveReadEnable=false\nx=1\n");
    }

    #[test]
    fn only_live_keys_with_good_values_are_taken() {
        assert!(matches!(parse_change("slaveReadEnable", "true"), Ok(Change::SlaveRead(true))));
        assert!(matches!(parse_change("waitTimeMillsInSendQueue", "500"), Ok(Change::SendQueueWaitMs(500))));
        let refused = |k, v| match parse_change(k, v) {
            Err(refusal) => refusal.remark().to_owned(),
            Ok(_) => panic!("{k}={v} taken"),
        };
        assert!(refused("slaveReadEnable", "yes").contains("not a value slaveReadEnable takes"));
        assert!(refused("brokerName", "b").contains("brokerName cannot change while the broker runs"));
        assert!(parse_properties("# comment\n\nk = v\n").unwrap() == vec![("k", "v")]);
        assert!(parse_properties("novalue\n").is_err());
    }
}
