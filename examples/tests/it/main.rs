//! The examples package's one integration-test binary.

mod architecture;
mod live_router;
mod route_snapshot;
#[path = "../../../bins/shared/test_proc.rs"]
#[allow(dead_code, reason = "shared helpers; these tests use some of them")]
mod test_proc;
