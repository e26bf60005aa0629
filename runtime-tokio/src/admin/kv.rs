//! mqadmin's KV config tools: the name server's namespaced settings (PUT_KV_CONFIG,
//! GET_KV_CONFIG, DELETE_KV_CONFIG) and ordered topics' queues per broker, kept there
//! (`ORDER_TOPIC_CONFIG`).

use anyhow::{anyhow, bail, Context};
use keel_core::namesrv::kv_config::ORDER_TOPIC_CONFIG;
use keel_core::protocol::headers::{
    CommandHeader, GetKvConfigResponseHeader, KvConfigKeyRequestHeader, PutKvConfigRequestHeader,
};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};

use super::change::Target;
use super::AdminClient;

impl AdminClient {
    /// Set `key` of `namespace` on the name server.
    pub async fn put_kv(&self, namespace: &str, key: &str, value: &str) -> anyhow::Result<()> {
        let header =
            PutKvConfigRequestHeader { namespace: namespace.into(), key: key.into(), value: value.into() };
        Self::call(self.namesrv, RequestCode::PUT_KV_CONFIG, header.to_ext_fields()).await?;
        Ok(())
    }

    /// The value of `key` of `namespace` on the name server, if set.
    pub async fn get_kv(&self, namespace: &str, key: &str) -> anyhow::Result<Option<String>> {
        let header = KvConfigKeyRequestHeader { namespace: namespace.into(), key: key.into() };
        let request = RemotingCommand::request(RequestCode::GET_KV_CONFIG, 0, header.to_ext_fields());
        let client = crate::remoting_client::RemotingClient::connect(self.namesrv)
            .await
            .with_context(|| format!("cannot connect to {}", self.namesrv))?;
        let reply =
            client.call(request).await.with_context(|| format!("GET_KV_CONFIG to {}", self.namesrv))?;
        match reply.response_code() {
            ResponseCode::SUCCESS => GetKvConfigResponseHeader::decode(&reply.ext_fields)
                .map(|h| h.value)
                .map_err(|e| anyhow!("GET_KV_CONFIG answered no value: {e}")),
            ResponseCode::QUERY_NOT_FOUND => Ok(None),
            code => bail!(
                "GET_KV_CONFIG to {} answered {code:?}: {}",
                self.namesrv,
                reply.remark.unwrap_or_default()
            ),
        }
    }

    /// Remove `key` of `namespace` from the name server.
    pub async fn delete_kv(&self, namespace: &str, key: &str) -> anyhow::Result<()> {
        let header = KvConfigKeyRequestHeader { namespace: namespace.into(), key: key.into() };
        Self::call(self.namesrv, RequestCode::DELETE_KV_CONFIG, header.to_ext_fields()).await?;
        Ok(())
    }

    /// Record `topic` as ordered over the broker sets of `target`, `queues` write queues on
    /// each (`brokerName:queues;…`); the configuration recorded.
    pub async fn put_order_conf(&self, topic: &str, target: &Target, queues: i32) -> anyhow::Result<String> {
        let masters = self.masters().await?;
        let names: std::collections::BTreeSet<&str> = masters
            .iter()
            .filter(|m| match target {
                Target::Broker(addr) => &m.addr == addr,
                Target::Cluster(cluster) => &m.cluster == cluster,
            })
            .map(|m| m.broker_name.as_str())
            .collect();
        if names.is_empty() {
            bail!("no master of {target:?} is registered with the name server");
        }
        let conf = names.iter().map(|name| format!("{name}:{queues}")).collect::<Vec<_>>().join(";");
        self.put_kv(ORDER_TOPIC_CONFIG, topic, &conf).await?;
        Ok(conf)
    }
}
