//! Subscription groups: consumer groups' server-side settings. A group is created when it
//! first heartbeats or pulls (`autoCreateSubscriptionGroup`), or by mqadmin `updateSubGroup`
//! (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP), removed by `deleteSubGroup`; the table is
//! persisted as `subscriptionGroup.json`. A group with `consumeEnable=false` may not pull.

use crate::broker::refusal::Refusal;
use crate::broker::shared::{Answer, Shared};
use crate::io::{Now, UnixMillis};
use crate::protocol::body::{SubscriptionGroupConfig, SubscriptionGroupWrapper};
use crate::protocol::headers::{
    CommandHeader, DeleteSubscriptionGroupRequestHeader, GetSubscriptionGroupConfigRequestHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{RemotingCommand, ResponseCode};

/// Groups by name, with a version bumped on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTable {
    table: SubscriptionGroupWrapper,
    auto_create: bool,
}

impl GroupTable {
    /// An empty table.
    #[must_use]
    pub fn new(auto_create: bool, now: UnixMillis) -> Self {
        let mut table = SubscriptionGroupWrapper::default();
        table.data_version.timestamp = now.0;
        Self { table, auto_create }
    }

    /// The table persisted in `subscriptionGroup.json`.
    #[must_use]
    pub fn from_wrapper(mut table: SubscriptionGroupWrapper, auto_create: bool, now: UnixMillis) -> Self {
        table.data_version.bump(now);
        Self { table, auto_create }
    }

    /// Whether unknown groups are created on first sight (`autoCreateSubscriptionGroup`,
    /// changed while running by UPDATE_BROKER_CONFIG).
    pub fn set_auto_create(&mut self, auto_create: bool) {
        self.auto_create = auto_create;
    }

    /// Take `table` whole, version included: a slave's copy of its master's groups.
    pub fn replace(&mut self, table: SubscriptionGroupWrapper) {
        self.table = table;
    }

    /// A group's settings.
    #[must_use]
    pub fn get(&self, group: &str) -> Option<&SubscriptionGroupConfig> {
        self.table.subscription_group_table.get(group)
    }

    /// The group's settings, created with defaults if unknown and auto-creation is on.
    /// Returns them and whether they were just created; `None` if unknown and not created.
    pub fn get_or_auto_create(
        &mut self,
        group: &str,
        now: UnixMillis,
    ) -> Option<(&SubscriptionGroupConfig, bool)> {
        let created = !self.table.subscription_group_table.contains_key(group);
        if created {
            if !self.auto_create {
                return None;
            }
            self.put(
                SubscriptionGroupConfig {
                    group_name: group.to_owned(),
                    ..SubscriptionGroupConfig::default()
                },
                now,
            );
        }
        self.get(group).map(|config| (config, created))
    }

    /// Create or replace a group.
    pub fn put(&mut self, config: SubscriptionGroupConfig, now: UnixMillis) {
        self.table.subscription_group_table.insert(config.group_name.clone(), config);
        self.table.data_version.bump(now);
    }

    /// Remove a group; true if it existed.
    pub fn remove(&mut self, group: &str, now: UnixMillis) -> bool {
        let existed = self.table.subscription_group_table.remove(group).is_some();
        self.table.forbidden_table.remove(group);
        if existed {
            self.table.data_version.bump(now);
        }
        existed
    }

    /// The whole table, as persisted and as GET_ALL_SUBSCRIPTIONGROUP_CONFIG answers.
    #[must_use]
    pub fn wrapper(&self) -> &SubscriptionGroupWrapper {
        &self.table
    }
}

impl super::Consumers {
    /// A consumer group was seen (heartbeat or pull): make sure it exists. Errors are the
    /// pull's answer when it does not and may not be created, or may not consume.
    pub(in crate::broker) fn check_group(
        &mut self,
        shared: &mut Shared,
        now: Now,
        group: &str,
    ) -> Result<(), Refusal> {
        let Some((config, created)) = self.groups.get_or_auto_create(group, now.wall) else {
            return Err(Refusal::GroupNotExist(format!("subscription group [{group}] does not exist")));
        };
        let enabled = config.consume_enable;
        if created {
            tracing::info!(group, "subscription group auto-created");
            shared.metadata.groups.mark_dirty();
        }
        if !enabled {
            return Err(Refusal::NoPermission(format!(
                "subscription group [{group}] no permission to consume"
            )));
        }
        Ok(())
    }

    /// A group's settings for its retries (auto-created if allowed); unlike
    /// [`check_group`](Self::check_group), a group that may not consume still has retries.
    pub(in crate::broker) fn group_config(
        &mut self,
        shared: &mut Shared,
        now: Now,
        group: &str,
    ) -> Result<SubscriptionGroupConfig, Refusal> {
        let Some((config, created)) = self.groups.get_or_auto_create(group, now.wall) else {
            return Err(Refusal::GroupNotExist(format!("subscription group [{group}] does not exist")));
        };
        let config = config.clone();
        if created {
            tracing::info!(group, "subscription group auto-created");
            shared.metadata.groups.mark_dirty();
        }
        Ok(config)
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: the body is the group's settings.
    pub(in crate::broker) fn on_update_group(
        &mut self,
        shared: &mut Shared,
        now: Now,
        request: &RemotingCommand,
    ) -> Answer {
        let config: SubscriptionGroupConfig = json::from_slice(&request.body)
            .map_err(|e| Refusal::SystemError(format!("bad subscription group body: {e}")))?;
        if config.group_name.is_empty() {
            return Err(Refusal::InvalidParameter("groupName is blank".into()));
        }
        tracing::info!(group = %config.group_name, "subscription group updated");
        self.groups.put(config, now.wall);
        shared.metadata.groups.mark_dirty();
        Ok(RemotingCommand::response_to(request, ResponseCode::SUCCESS, None))
    }

    /// DELETE_SUBSCRIPTIONGROUP, with its offsets too when `cleanOffset` is set.
    pub(in crate::broker) fn on_delete_group(
        &mut self,
        shared: &mut Shared,
        now: Now,
        request: &RemotingCommand,
    ) -> Answer {
        let header = DeleteSubscriptionGroupRequestHeader::decode(&request.ext_fields)?;
        if self.groups.remove(&header.group_name, now.wall) {
            tracing::info!(group = %header.group_name, "subscription group deleted");
            shared.metadata.groups.mark_dirty();
        }
        if header.clean_offset == Some(true) {
            self.offsets.remove_group(&header.group_name);
            shared.traffic.forget_group(&header.group_name);
            shared.metadata.offsets.mark_dirty();
        }
        Ok(RemotingCommand::response_to(request, ResponseCode::SUCCESS, None))
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (unpaged: the paging headers of 5.3+ are ignored
    /// and everything is returned, which paging clients accept as the last page).
    pub(in crate::broker) fn on_get_all_groups(&self, request: &RemotingCommand) -> Answer {
        let body = json::to_vec(self.groups.wrapper(), KeyStyle::Fastjson)
            .map_err(|e| Refusal::SystemError(e.to_string()))?;
        Ok(RemotingCommand::response_to(request, ResponseCode::SUCCESS, None).with_body(body))
    }

    /// GET_SUBSCRIPTIONGROUP_CONFIG.
    pub(in crate::broker) fn on_get_group(&self, request: &RemotingCommand) -> Answer {
        let header = GetSubscriptionGroupConfigRequestHeader::decode(&request.ext_fields)?;
        let Some(config) = self.groups.get(&header.group) else {
            // An answer, not a refusal: the group's absence is what the tool asked about.
            let absent =
                Refusal::GroupNotExist(format!("subscription group [{}] does not exist", header.group));
            return Ok(absent.reply_to(request));
        };
        let body =
            json::to_vec(config, KeyStyle::Fastjson).map_err(|e| Refusal::SystemError(e.to_string()))?;
        Ok(RemotingCommand::response_to(request, ResponseCode::SUCCESS, None).with_body(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_auto_create_only_when_allowed_and_bump_the_version() {
        let mut table = GroupTable::new(true, UnixMillis(1));
        let (config, created) = table.get_or_auto_create("g", UnixMillis(2)).unwrap();
        assert!(created && config.consume_enable && config.retry_max_times == 16);
        assert!(!table.get_or_auto_create("g", UnixMillis(3)).unwrap().1);
        assert_eq!(table.wrapper().data_version.counter, 1);
        assert!(table.remove("g", UnixMillis(4)));
        assert!(!table.remove("g", UnixMillis(5)));
        assert_eq!(table.wrapper().data_version.counter, 2);
        let mut strict = GroupTable::new(false, UnixMillis(1));
        assert!(strict.get_or_auto_create("g", UnixMillis(2)).is_none());
        let reloaded = GroupTable::from_wrapper(table.wrapper().clone(), true, UnixMillis(9));
        assert_eq!(reloaded.wrapper().data_version.counter, 3);
    }
}
