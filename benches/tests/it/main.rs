//! Integration tests of the benchmark tools: the soak harness's smoke run.
mod soak;
