//! The gateway's error type.

/// What can go wrong setting the gateway up. (Errors while serving a request are
/// answers to the client, in the protocol's own shape, not values of this type.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range or a key file is unusable.
    #[error("invalid gateway setting: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("cannot build the gateway's HTTP client: {0}")]
    Client(String),
}

/// The gateway's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
