//! The connection type ([`Conn`]): one reconnecting connection to a single server or
//! a cluster connection, behind redis's `ConnectionLike`, and how a batch of commands
//! runs on each (one pipeline, or concurrent per-slot commands stage by stage). Knows
//! nothing of the registry.

use redis::aio::{ConnectionLike, ConnectionManager};
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisFuture, Value};

#[cfg(feature = "cluster")]
use super::cluster_stage as cluster;

/// An open connection: a reconnecting one to a single server, or a cluster one.
#[derive(Clone)]
pub(super) enum Conn {
    /// One server, reconnected by the manager.
    Single(ConnectionManager),
    /// A Redis Cluster (routing by slot), with the slot ranges its stages group commands
    /// by (kept across stages and reads; a new connection starts without).
    #[cfg(feature = "cluster")]
    Cluster(ClusterConnection, cluster::SlotMap),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c, _) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(..) => 0,
        }
    }
}

impl Conn {
    /// Runs `stages` of commands and returns every reply in order: one pipeline on a
    /// standalone server (executed in order); on a cluster, a stage as one pipeline per
    /// master (see `cluster_stage`), each stage after the previous one has completed.
    pub(super) async fn exec_stages(
        &mut self,
        stages: Vec<Vec<Cmd>>,
    ) -> redis::RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in stages.into_iter().flatten() {
                    pipe.add_command(cmd);
                }
                pipe.query_async(c).await
            }
            #[cfg(feature = "cluster")]
            Conn::Cluster(c, map) => {
                let mut out = Vec::new();
                for stage in stages {
                    for r in cluster::stage(c, map, stage).await? {
                        out.push(r?);
                    }
                }
                Ok(out)
            }
        }
    }

    /// As [`Self::exec_stages`], but a command the server answered with an error (e.g.
    /// `WRONGTYPE`) yields that error in its place while the others still run and answer;
    /// only a failure of the connection itself fails the whole call.
    pub(super) async fn exec_stages_each(
        &mut self,
        stages: Vec<Vec<Cmd>>,
    ) -> redis::RedisResult<Vec<redis::RedisResult<Value>>> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for cmd in stages.into_iter().flatten() {
                    pipe.add_command(cmd);
                }
                pipe.query_async(c).await
            }
            #[cfg(feature = "cluster")]
            Conn::Cluster(c, map) => {
                let mut out = Vec::new();
                for stage in stages {
                    for r in cluster::stage(c, map, stage).await? {
                        match r {
                            // A server's answer to this one command.
                            Err(e) if e.code().is_some() => out.push(Err(e)),
                            Err(e) => return Err(e),
                            Ok(v) => out.push(Ok(v)),
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}
