//! Integration tests of `vramroute-node` (one test binary, `it`).

mod report;
