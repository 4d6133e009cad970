pub(crate) mod support;

mod cli;
mod cluster;
mod daemon;
