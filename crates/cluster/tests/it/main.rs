//! Integration tests of the cluster layer.

mod backends;
mod common;
mod live;
mod metadata;
mod optimize;
mod props;
mod sollol;
