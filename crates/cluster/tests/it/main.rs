//! Integration tests of the cluster layer.

mod common;
mod live;
mod props;
mod sollol;
