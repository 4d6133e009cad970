//! Integration tests of the cluster layer.

mod backends;
mod changes_only;
mod common;
mod live;
mod metadata;
mod optimize;
mod props;
mod sollol;
