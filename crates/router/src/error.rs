//! The crate's one error type.

/// Why a configuration, a node description or a reservation was refused.
///
/// Routing itself never fails with this type: a request that cannot be placed yields a
/// [`NoRoute`](crate::NoRoute), which is an answer, not an error.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy or snapshot setting is out of range.
    #[error("invalid router setting `{field}` = {value}: expected {expected}; fix the policy or snapshot configuration")]
    InvalidConfig {
        /// The setting's name as written in the configuration.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A node description holds an impossible value. The snapshot keeps the node but never
    /// routes to it (see [`NodeStatus::Invalid`](crate::NodeStatus::Invalid)).
    #[error("node {node:?}: `{field}` = {value} is not plausible (expected {expected}); the node is not routed to until its report is fixed")]
    InvalidNode {
        /// The node's id.
        node: String,
        /// The field path, e.g. `gpus[1].memory_free_mib`.
        field: String,
        /// The offending value.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// Two nodes share an id; ids must be unique within a snapshot.
    #[error("duplicate node id {node:?} in snapshot input: node ids must be unique (did two registry records map to one node?)")]
    DuplicateNode {
        /// The repeated id.
        node: String,
    },
    /// More distinct labels than the snapshot can index.
    #[error("{count} distinct node labels in snapshot input, at most {max} are supported: use fewer, coarser labels")]
    TooManyLabels {
        /// How many distinct labels the input had.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A policy name that is not one of `sollol`, `binpack`, `spread`.
    #[error("unknown routing policy {name:?}: expected \"sollol\", \"binpack\" or \"spread\"")]
    UnknownPolicy {
        /// The name that was given.
        name: String,
    },
    /// A node index beyond the snapshot.
    #[error("node index {index} is out of range: the snapshot has {len} nodes")]
    NoSuchNode {
        /// The index that was given.
        index: u32,
        /// Number of nodes in the snapshot.
        len: usize,
    },
    /// A node id the snapshot does not know.
    #[error("node {node:?} is not in the current snapshot (it may have left the cluster)")]
    UnknownNode {
        /// The id that was given.
        node: String,
    },
    /// A GPU index the node does not have.
    #[error("node {node:?} has no GPU with index {gpu}")]
    NoSuchGpu {
        /// The node's id.
        node: String,
        /// The GPU index that was given.
        gpu: u32,
    },
    /// A decision made on another snapshot was handed to this one.
    #[error("the decision was made on snapshot #{decision} but this is snapshot #{snapshot}: use Router::route_and_reserve or Router::reserve_node, which work on the current snapshot")]
    SnapshotMismatch {
        /// The snapshot the decision came from.
        decision: u64,
        /// This snapshot.
        snapshot: u64,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid_config(
    field: &'static str,
    value: impl ToString,
    expected: &'static str,
) -> Error {
    Error::InvalidConfig {
        field,
        value: value.to_string(),
        expected,
    }
}
