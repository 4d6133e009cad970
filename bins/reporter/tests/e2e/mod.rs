pub(crate) mod support;

mod cli;
mod run;
