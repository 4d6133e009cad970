//! The usage error of both binaries (each includes this file with `#[path]` and
//! re-exports it as `crate::UsageError`; its `main` maps it to exit status 2).

/// An error caused by what the user asked for (bad flag, path or value): exit status 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
