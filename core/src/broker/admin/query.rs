//! QUERY_MESSAGE: messages by key (a KEYS token, or the UNIQ_KEY) from the IndexFile.

use super::Admin;
use crate::broker::consumers::ok;
use crate::broker::refusal::Refusal;
use crate::broker::shared::{Answer, Shared};
use crate::protocol::headers::{CommandHeader, QueryMessageRequestHeader, QueryMessageResponseHeader};
use crate::protocol::RemotingCommand;
use crate::store::KeyQuery;

/// Messages a unique-key query returns at most (RocketMQ's `defaultQueryMaxNum`).
const UNIQUE_KEY_MAX: usize = 32;

impl Admin {
    /// Every message of the topic stored with the key within the time range, newest first,
    /// as concatenated stored records; QUERY_NOT_FOUND if none.
    pub(in crate::broker) fn on_query_message(shared: &Shared, request: &RemotingCommand) -> Answer {
        let header = QueryMessageRequestHeader::decode(&request.ext_fields)?;
        let unique = header.unique_key_query.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !shared.store.config().index.enabled {
            return Err(Refusal::SystemError(
                "the broker does not index messages (messageIndexEnable=false)".into(),
            ));
        }
        let query = KeyQuery {
            topic: &header.topic,
            key: &header.key,
            unique,
            max: if unique { UNIQUE_KEY_MAX } else { usize::try_from(header.max_num).unwrap_or(1) },
            begin_ms: header.begin_timestamp,
            end_ms: header.end_timestamp,
        };
        let found = shared
            .store
            .query_by_key(&*shared.reader, &query)
            .map_err(|e| Refusal::SystemError(format!("query by key failed: {e}")))?;
        if found.records.is_empty() {
            return Err(Refusal::QueryNotFound("can not find message, maybe time range not correct".into()));
        }
        let mut body = Vec::with_capacity(found.records.iter().map(|r| r.len()).sum());
        for record in &found.records {
            body.extend_from_slice(record);
        }
        let mut reply = ok(request).with_body(body);
        reply.ext_fields = QueryMessageResponseHeader {
            index_last_update_timestamp: found.last_update_timestamp,
            index_last_update_phyoffset: found.last_update_phys,
        }
        .to_ext_fields();
        Ok(reply)
    }
}
