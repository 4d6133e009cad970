//! Our writes: a stats record (key, SOLLOL's history stream, our index, change log and
//! announcement), a registration, a deregistration and the router metadata, each
//! validated by our own reader's rules first and issued in the order the change log
//! relies on (record, then index entry, then log entry).

use redis::Cmd;

use super::state::RedisRegistry;
use super::value::{ttl_ms, unix_ms};
use crate::change::Change;
use crate::error::{Error, Result};
use crate::keys;
use crate::record::{GpuStatsRecord, RouterMetadata, RpcNodeRecord};
use crate::validate;
use crate::watch;

impl RedisRegistry {
    /// `XADD vramroute:changes MAXLEN ~ … * {field} {id}`: the change-log entry of a
    /// write (or delete) of the record `id`.
    fn log_cmd(&self, field: &str, id: &str) -> Cmd {
        let mut c = redis::cmd("XADD");
        c.arg(keys::CHANGES)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inner.config.change_log_maxlen.max(1))
            .arg("*")
            .arg(field)
            .arg(id);
        c
    }

    /// `PUBLISH vramroute:events …`: the announcement of a change on our channel.
    fn publish_cmd(change: &Change) -> Cmd {
        let mut c = redis::cmd("PUBLISH");
        c.arg(keys::EVENTS_CHANNEL)
            .arg(watch::channel_message(change));
        c
    }

    /// Runs a write's commands in order (each completed before the next, also in
    /// cluster mode). A command paired with one of our bookkeeping keys (index, change
    /// log, history stream) that finds that key holding the wrong Redis type
    /// (`WRONGTYPE`, e.g. a stray `SET` by hand) does not fail the write: the record
    /// itself is written, the key is warned about once (`note_wrong_type`) and
    /// discovery falls back to reads that do not need it. Any other error fails it.
    async fn exec_write(
        &self,
        op: &'static str,
        cmds: Vec<(Cmd, Option<&'static str>)>,
    ) -> Result<()> {
        let (cmds, ours): (Vec<Cmd>, Vec<Option<&'static str>>) = cmds.into_iter().unzip();
        let stages = cmds.into_iter().map(|c| vec![c]).collect();
        let mut replies = self.exec_staged_each(op, stages).await?.into_iter();
        for key in ours {
            let reply = replies.next();
            match key {
                Some(key) => {
                    let wrong = self.unless_wrong_type(op, reply)?.is_none();
                    self.note_wrong_type(key, wrong, op);
                }
                None => {
                    if let Some(Err(e)) = reply {
                        return Err(self.map_err(op, &e));
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Registry::publish_stats`](crate::Registry::publish_stats).
    pub(super) async fn write_stats(&self, record: &GpuStatsRecord) -> Result<()> {
        let invalid = |reason| Error::InvalidRecord {
            what: "stats record",
            reason,
        };
        keys::check_key_part("node id", &record.node_id).map_err(invalid)?;
        validate::validate_stats(record, &self.inner.config.limits).map_err(invalid)?;
        let cfg = &self.inner.config;
        let json = record.to_json();
        let fields = pyjson_fields(&json);
        let mut set = redis::cmd("SET");
        set.arg(keys::gpu_stats_key(&record.node_id))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms(cfg.stats_ttl));
        let mut xadd = redis::cmd("XADD");
        xadd.arg(keys::GPU_STATS_STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(cfg.stream_maxlen)
            .arg("*");
        for (k, v) in &fields {
            xadd.arg(k).arg(v);
        }
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(keys::INDEX_GPU)
            .arg(unix_ms().saturating_add(ttl_ms(cfg.stats_ttl)))
            .arg(record.node_id.as_str());
        let log = self.log_cmd(keys::CHANGE_GPU, &record.node_id);
        let publish = Self::publish_cmd(&Change::Updated(record.node_id.to_string()));
        // In this order: a reader that sees the index entry or the log entry must find
        // this value, and one that sees the log entry must find the index entry.
        self.exec_write(
            "publish stats",
            vec![
                (set, None),
                (xadd, Some(keys::GPU_STATS_STREAM)),
                (zadd, Some(keys::INDEX_GPU)),
                (log, Some(keys::CHANGES)),
                (publish, None),
            ],
        )
        .await?;
        // A junk value this write replaced is not junk any more (see `bounded`).
        if self.has_junk() {
            self.forget_junk(std::iter::once(keys::gpu_stats_key(&record.node_id)));
        }
        Ok(())
    }

    /// [`Registry::register`](crate::Registry::register).
    pub(super) async fn write_registration(
        &self,
        host: &str,
        port: u16,
        record: &RpcNodeRecord,
    ) -> Result<()> {
        let invalid = |reason| Error::InvalidRecord {
            what: "registration",
            reason,
        };
        keys::check_key_part("host", host).map_err(invalid)?;
        validate::validate_rpc(record, &self.inner.config.limits).map_err(invalid)?;
        let ttl = self.inner.config.registration_ttl;
        let member = keys::rpc_member(host, port);
        let mut set = redis::cmd("SET");
        set.arg(keys::rpc_node_key(host, port))
            .arg(record.to_json())
            .arg("PX")
            .arg(ttl_ms(ttl));
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(keys::INDEX_RPC)
            .arg(unix_ms().saturating_add(ttl_ms(ttl)))
            .arg(&member);
        let log = self.log_cmd(keys::CHANGE_RPC, &member);
        let publish = Self::publish_cmd(&Change::RpcUpdated(member));
        // In this order: see `publish_stats`.
        self.exec_write(
            "register",
            vec![
                (set, None),
                (zadd, Some(keys::INDEX_RPC)),
                (log, Some(keys::CHANGES)),
                (publish, None),
            ],
        )
        .await?;
        if self.has_junk() {
            self.forget_junk(std::iter::once(keys::rpc_node_key(host, port)));
        }
        Ok(())
    }

    /// [`Registry::deregister`](crate::Registry::deregister).
    pub(super) async fn delete_records(
        &self,
        node_id: &str,
        rpc: Option<(&str, u16)>,
    ) -> Result<()> {
        let mut cmds = vec![
            (
                redis::cmd("DEL").arg(keys::gpu_stats_key(node_id)).clone(),
                None,
            ),
            (
                redis::cmd("ZREM").arg(keys::INDEX_GPU).arg(node_id).clone(),
                Some(keys::INDEX_GPU),
            ),
            (self.log_cmd(keys::CHANGE_GPU, node_id), Some(keys::CHANGES)),
            (
                Self::publish_cmd(&Change::Removed(node_id.to_owned())),
                None,
            ),
        ];
        if let Some((host, port)) = rpc {
            let member = keys::rpc_member(host, port);
            cmds.push((
                redis::cmd("DEL")
                    .arg(keys::rpc_node_key(host, port))
                    .clone(),
                None,
            ));
            cmds.push((
                redis::cmd("ZREM").arg(keys::INDEX_RPC).arg(&member).clone(),
                Some(keys::INDEX_RPC),
            ));
            cmds.push((self.log_cmd(keys::CHANGE_RPC, &member), Some(keys::CHANGES)));
            cmds.push((Self::publish_cmd(&Change::RpcRemoved(member)), None));
        }
        self.exec_write("deregister", cmds).await?;
        let mut st = self.scan_state();
        st.legacy_gpu.remove(node_id);
        if let Some((host, port)) = rpc {
            st.legacy_rpc.remove(&keys::rpc_member(host, port));
        }
        Ok(())
    }

    /// [`Registry::set_router_metadata`](crate::Registry::set_router_metadata).
    pub(super) async fn write_metadata(&self, metadata: &RouterMetadata) -> Result<()> {
        validate::validate_metadata(metadata, &self.inner.config.limits).map_err(|reason| {
            Error::InvalidRecord {
                what: "router metadata",
                reason,
            }
        })?;
        let set = redis::cmd("SET")
            .arg(keys::ROUTER_METADATA)
            .arg(metadata.to_json())
            .clone();
        self.exec(
            "set router metadata",
            vec![set, Self::publish_cmd(&Change::MetadataChanged)],
        )
        .await?;
        Ok(())
    }
}

/// The stream fields of a stats record's JSON (SOLLOL's encoding).
fn pyjson_fields(json: &str) -> Vec<(String, String)> {
    crate::pyjson::stream_fields(json).unwrap_or_default()
}
