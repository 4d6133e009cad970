//! The address this node advertises: the I/O around `vramroute_node`'s rule
//! ([`choose_advertise_ip`]: the route's address, or an interface address when the route
//! to Redis is loopback). Here: the route's local address, this machine's interfaces
//! (or the hidden `--interfaces` of tests), and the log line saying how the address was
//! chosen. `--advertise-ip` overrides all of it.

use vramroute_node::{choose_advertise_ip, AdvertiseChoice, NetInterface};

use crate::settings::route_source_ip;
use crate::UsageError;

/// Log how the address was chosen; a loopback-only address is a warning.
pub(crate) fn log(choice: &AdvertiseChoice) {
    match choice {
        AdvertiseChoice::Route(ip) => {
            tracing::debug!(%ip, "advertising the local address of the route to Redis");
        }
        AdvertiseChoice::Interface { ip, name } => tracing::info!(
            %ip,
            interface = %name,
            "the route to Redis is loopback (Redis runs on this machine): advertising {ip} of {name}; set --advertise-ip to choose another"
        ),
        AdvertiseChoice::LoopbackOnly(ip) => tracing::warn!(
            %ip,
            "this machine has no non-loopback address: advertising {ip}, which other nodes cannot reach; set --advertise-ip"
        ),
    }
}

/// The address to advertise for a reporter publishing to `redis_url`, given this
/// machine's interface addresses.
pub(crate) fn advertise_ip(redis_url: &str, interfaces: &[NetInterface]) -> AdvertiseChoice {
    choose_advertise_ip(route_source_ip(redis_url), interfaces)
}

/// This machine's interface addresses: `list` when given (`NAME=IP,NAME=IP`, the hidden
/// `--interfaces` of tests), else the operating system's.
pub(crate) fn interfaces(list: Option<&str>) -> Result<Vec<NetInterface>, UsageError> {
    match list {
        Some(text) => parse_interfaces(text),
        None => Ok(system_interfaces()),
    }
}

fn system_interfaces() -> Vec<NetInterface> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .map(|i| NetInterface::new(i.name.clone(), i.ip()))
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list network interfaces: {e}");
            Vec::new()
        }
    }
}

fn parse_interfaces(text: &str) -> Result<Vec<NetInterface>, UsageError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (name, ip) = entry.split_once('=').ok_or_else(|| {
                UsageError(format!("--interfaces {entry:?}: give NAME=IP[,NAME=IP...]"))
            })?;
            let ip = ip
                .trim()
                .parse()
                .map_err(|e| UsageError(format!("--interfaces {entry:?}: {e}")))?;
            Ok(NetInterface::new(name.trim(), ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_lists_parse_and_bad_ones_are_usage_errors() {
        assert!(parse_interfaces("eth0").is_err());
        assert!(parse_interfaces("eth0=999.1.1.1").is_err());
        let got = parse_interfaces(" lo = 127.0.0.1 , eth1=192.168.77.5,").expect("a list");
        assert_eq!(
            got,
            [
                NetInterface::new("lo", "127.0.0.1".parse().expect("ip")),
                NetInterface::new("eth1", "192.168.77.5".parse().expect("ip")),
            ]
        );
        // The parsed list feeds the rule: a loopback route takes eth1.
        assert_eq!(
            choose_advertise_ip("127.0.0.1".parse().expect("ip"), &got).ip(),
            "192.168.77.5".parse::<std::net::IpAddr>().expect("ip")
        );
    }
}
