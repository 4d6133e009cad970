//! Integration tests of the cluster layer.

mod backends;
mod common;
mod live;
mod optimize;
mod props;
mod sollol;
