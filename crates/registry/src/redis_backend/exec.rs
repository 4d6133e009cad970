//! Running commands: the shared connection opened on demand with capped exponential
//! backoff between failed attempts, every operation bounded by `command_timeout`, and
//! redis errors mapped to ours (auth, timeout, unreachable, server error) without
//! secrets.

use std::future::Future;
use std::time::Instant;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisError, Value};

use super::conn::Conn;
use super::state::{RedisRegistry, Target};
use crate::error::{scrub, Error, Result};

impl RedisRegistry {
    /// Our error for a redis error of `op` (scrubbed of the password).
    pub(super) fn map_err(&self, op: &'static str, e: &RedisError) -> Error {
        let url = self.inner.url.clone();
        let reason = scrub(&e.to_string(), self.inner.secret.as_deref());
        let auth = matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
        if auth {
            Error::Auth { url, reason }
        } else if e.is_timeout() {
            Error::Timeout {
                url,
                op,
                after: self.inner.config.command_timeout,
            }
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            Error::Unreachable { url, reason }
        } else {
            Error::Redis { url, op, reason }
        }
    }

    /// A copy of a remembered connection error (errors are not `Clone`).
    fn copy_err(e: &Error) -> Error {
        match e {
            Error::Unreachable { url, reason } => Error::Unreachable {
                url: url.clone(),
                reason: reason.clone(),
            },
            Error::Auth { url, reason } => Error::Auth {
                url: url.clone(),
                reason: reason.clone(),
            },
            other => Error::Unreachable {
                url: String::new(),
                reason: other.to_string(),
            },
        }
    }

    /// Opens a new connection (no backoff; see [`Self::conn`]).
    async fn open(&self) -> Result<Conn> {
        let cfg = &self.inner.config;
        match &self.inner.target {
            Target::Single(client) => {
                let mc = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(cfg.command_timeout))
                    .set_response_timeout(Some(cfg.command_timeout))
                    .set_min_delay(cfg.reconnect_min_delay)
                    .set_max_delay(cfg.reconnect_max_delay)
                    .set_number_of_retries(3);
                ConnectionManager::new_with_config(client.clone(), mc)
                    .await
                    .map(Conn::Single)
                    .map_err(|e| self.map_err("connect", &e))
            }
            #[cfg(feature = "cluster")]
            Target::Cluster { client, .. } => client
                .get_async_connection()
                .await
                .map(|c| Conn::Cluster(c, Default::default()))
                .map_err(|e| self.map_err("connect", &e)),
        }
    }

    /// The shared connection, opened on demand with capped exponential backoff between
    /// failed attempts (failing fast in between).
    async fn conn(&self) -> Result<Conn> {
        let mut slot = self.inner.slot.lock().await;
        if let Some(c) = &slot.conn {
            return Ok(c.clone());
        }
        if let (Some(at), Some(err)) = (slot.next_attempt, &slot.last_error) {
            if Instant::now() < at {
                return Err(Self::copy_err(err));
            }
        }
        match self.open().await {
            Ok(c) => {
                slot.conn = Some(c.clone());
                slot.failures = 0;
                slot.next_attempt = None;
                slot.last_error = None;
                Ok(c)
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                let cfg = &self.inner.config;
                let factor = 1u32 << slot.failures.min(16).saturating_sub(1);
                let delay = (cfg.reconnect_min_delay * factor).min(cfg.reconnect_max_delay);
                slot.next_attempt = Some(Instant::now() + delay);
                slot.last_error = Some(Self::copy_err(&e));
                Err(e)
            }
        }
    }

    /// Runs `f` on the connection, the whole under `command_timeout`.
    pub(super) async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.inner.config.command_timeout;
        let work = async {
            let conn = self.conn().await?;
            f(conn).await.map_err(|e| self.map_err(op, &e))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                url: self.inner.url.clone(),
                op,
                after: timeout,
            }),
        }
    }

    /// Runs `cmds` (one pipeline; concurrently in cluster mode) under the timeout.
    pub(super) async fn exec(&self, op: &'static str, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
        self.exec_staged(op, vec![cmds]).await
    }

    /// As [`Self::exec`], with each stage completed before the next starts (in cluster
    /// mode; a standalone pipeline runs in order anyway).
    pub(super) async fn exec_staged(
        &self,
        op: &'static str,
        stages: Vec<Vec<Cmd>>,
    ) -> Result<Vec<Value>> {
        self.run(op, |mut c| async move { c.exec_stages(stages).await })
            .await
    }

    /// As [`Self::exec_staged`], but each command's server error (e.g. `WRONGTYPE`) is
    /// returned in its place instead of failing the call; the other commands still run.
    pub(super) async fn exec_staged_each(
        &self,
        op: &'static str,
        stages: Vec<Vec<Cmd>>,
    ) -> Result<Vec<redis::RedisResult<Value>>> {
        self.run(op, |mut c| async move { c.exec_stages_each(stages).await })
            .await
    }

    /// One reply of [`Self::exec_staged_each`]: `Ok(Some(value))`, `Ok(None)` when the
    /// key has the wrong Redis type (`WRONGTYPE`), our error otherwise.
    pub(super) fn unless_wrong_type(
        &self,
        op: &'static str,
        reply: Option<redis::RedisResult<Value>>,
    ) -> Result<Option<Value>> {
        match reply {
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(e)) if is_wrong_type(&e) => Ok(None),
            Some(Err(e)) => Err(self.map_err(op, &e)),
            None => Err(Error::Redis {
                url: self.inner.url.clone(),
                op,
                reason: "unexpected reply: fewer replies than commands".to_owned(),
            }),
        }
    }

    /// Remaining time to live of `key` in milliseconds (`PTTL`: -2 absent, -1 no expiry).
    pub async fn pttl(&self, key: &str) -> Result<i64> {
        let key = key.to_owned();
        self.run("PTTL", |mut c| async move {
            redis::cmd("PTTL").arg(key).query_async::<i64>(&mut c).await
        })
        .await
    }
}

/// Whether `e` is the server's `WRONGTYPE` (a command on a key holding another type).
pub(super) fn is_wrong_type(e: &RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
}
