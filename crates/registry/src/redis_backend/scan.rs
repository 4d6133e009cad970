//! Finding keys written without our index (by SOLLOL's tools): a bounded cursor `SCAN`
//! for `sollol:*` on the server or on every cluster master, per [`ScanStrategy`]; what
//! it finds goes into the shared `ScanState`.

use std::collections::BTreeSet;
use std::time::Instant;

#[cfg(feature = "cluster")]
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::Value;

#[cfg(feature = "cluster")]
use super::conn::Conn;
use super::state::RedisRegistry;
use super::value::{array_of, bytes_of, strings_of};
use crate::config::ScanStrategy;
use crate::error::Result;
use crate::keys;

/// Most SCAN calls per node in one sweep (× `scan_count` keys each).
const MAX_SCAN_CALLS: usize = 100_000;

impl RedisRegistry {
    /// The masters' addresses of a cluster (from `CLUSTER NODES`).
    #[cfg(feature = "cluster")]
    async fn cluster_masters(&self) -> Result<Vec<(String, u16)>> {
        let text: String = self
            .run("CLUSTER NODES", |c| async move {
                let Conn::Cluster(mut c, _) = c else {
                    return Ok(String::new());
                };
                let v = c
                    .route_command(
                        redis::cmd("CLUSTER").arg("NODES").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?;
                Ok(bytes_of(v)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default())
            })
            .await?;
        Ok(parse_cluster_masters(&text))
    }

    /// One cursor SCAN sweep for `sollol:*` on every (master) node, bounded in calls.
    pub(super) async fn scan_sweep(&self) -> Result<()> {
        // `None`: the one server (or whichever node the connection picks).
        #[cfg(feature = "cluster")]
        let nodes: Vec<Option<(String, u16)>> = if self.is_cluster() {
            self.cluster_masters()
                .await?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        #[cfg(not(feature = "cluster"))]
        let nodes: Vec<Option<(String, u16)>> = vec![None];
        let count = self.inner.config.scan_count.max(1);
        let (mut gpu, mut rpc) = (BTreeSet::new(), BTreeSet::new());
        for node in nodes {
            let mut cursor: u64 = 0;
            for _ in 0..MAX_SCAN_CALLS {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg("sollol:*")
                    .arg("COUNT")
                    .arg(count);
                let node = node.clone();
                let reply = self
                    .run("SCAN", |c| async move {
                        match (c, node) {
                            #[cfg(feature = "cluster")]
                            (Conn::Cluster(mut c, _), Some((host, port))) => {
                                c.route_command(
                                    cmd,
                                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                        host,
                                        port,
                                    }),
                                )
                                .await
                            }
                            (mut c, _) => cmd.query_async::<Value>(&mut c).await,
                        }
                    })
                    .await?;
                let mut parts = array_of(reply).into_iter();
                let next: u64 = parts
                    .next()
                    .and_then(bytes_of)
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                for key in parts.next().map(strings_of).unwrap_or_default() {
                    if let Some(id) = keys::node_id_from_stats_key(&key) {
                        gpu.insert(id.to_owned());
                    } else if let Some((h, p)) = keys::rpc_from_key(&key) {
                        rpc.insert(keys::rpc_member(h, p));
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let mut st = self.scan_state();
        st.legacy_gpu.extend(gpu);
        st.legacy_rpc.extend(rpc);
        st.last = Some(Instant::now());
        Ok(())
    }

    /// Whether discovery should sweep now, per [`ScanStrategy`].
    pub(super) fn scan_due(&self) -> bool {
        match self.inner.config.scan {
            ScanStrategy::Never => false,
            ScanStrategy::EveryDiscover => true,
            ScanStrategy::Periodic(every) => {
                self.scan_state().last.is_none_or(|t| t.elapsed() >= every)
            }
        }
    }

    /// Runs one SCAN sweep now (normally done by discovery per [`ScanStrategy`]).
    pub async fn rescan(&self) -> Result<()> {
        self.scan_sweep().await
    }
}

#[cfg(feature = "cluster")]
/// Masters from `CLUSTER NODES` output (`id ip:port@cport flags master …`).
fn parse_cluster_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _id = f.next()?;
            let addr = f.next()?;
            let flags = f.next()?;
            if !flags.split(',').any(|x| x == "master") || flags.contains("fail") {
                return None;
            }
            let hostport = addr.split('@').next()?;
            let (host, port) = keys::split_host_port(hostport)?;
            Some((host.to_owned(), port))
        })
        .collect()
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use super::*;

    #[test]
    fn cluster_masters_are_parsed() {
        let text = "a 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n\
                    b 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922\n\
                    c 127.0.0.1:7003@17003 slave b 0 0 2 connected\n\
                    d 127.0.0.1:7004@17004 master,fail - 0 0 3 disconnected\n";
        assert_eq!(
            parse_cluster_masters(text),
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }
}
