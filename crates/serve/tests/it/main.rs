//! The serving loop over real loopback sockets: timeouts, the cap, draining.

mod limits;
