//! Integration tests of `vramroute-router` (one binary, modules per topic).

mod common;
mod explain;
mod fit;
mod model_names;
mod policies;
mod props;
mod prune;
mod reservations;
mod router;
mod sollol_rules;
mod validation;
