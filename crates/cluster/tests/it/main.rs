//! Integration tests of the cluster layer.

mod backends;
mod common;
mod live;
mod props;
mod sollol;
