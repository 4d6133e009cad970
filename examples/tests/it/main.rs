//! The examples package's one integration-test binary.

mod architecture;
mod route_snapshot;
