//! The address this node advertises (the `{ip}` of `sollol:gpu:{ip}:11434` and
//! `sollol:rpc:node:{ip}:{port}`): one other nodes can reach.
//!
//! The local address of the route towards Redis is right everywhere except on the
//! machine that runs Redis, where that route is loopback: there a non-loopback interface
//! address is taken instead, and loopback only when the machine has nothing else (with a
//! warning). `--advertise-ip` overrides all of it.

use std::net::IpAddr;

use crate::settings::route_source_ip;
use crate::UsageError;

/// One address of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interface {
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
}

/// How the advertised address was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Advertise {
    /// The local address of the route towards Redis (not loopback).
    Route(IpAddr),
    /// The route towards Redis is loopback (Redis runs here): this interface's address.
    Interface { ip: IpAddr, name: String },
    /// Nothing but loopback exists: other nodes cannot reach this address.
    LoopbackOnly(IpAddr),
}

impl Advertise {
    pub(crate) fn ip(&self) -> IpAddr {
        match self {
            Advertise::Route(ip) | Advertise::LoopbackOnly(ip) => *ip,
            Advertise::Interface { ip, .. } => *ip,
        }
    }

    /// Log how the address was chosen; a loopback-only address is a warning.
    pub(crate) fn log(&self) {
        match self {
            Advertise::Route(ip) => {
                tracing::debug!(%ip, "advertising the local address of the route to Redis");
            }
            Advertise::Interface { ip, name } => tracing::info!(
                %ip,
                interface = %name,
                "the route to Redis is loopback (Redis runs on this machine): advertising {ip} of {name}; set --advertise-ip to choose another"
            ),
            Advertise::LoopbackOnly(ip) => tracing::warn!(
                %ip,
                "this machine has no non-loopback address: advertising {ip}, which other nodes cannot reach; set --advertise-ip"
            ),
        }
    }
}

/// The address to advertise for a reporter publishing to `redis_url`, given this
/// machine's interface addresses.
pub(crate) fn advertise_ip(redis_url: &str, interfaces: &[Interface]) -> Advertise {
    choose(route_source_ip(redis_url), interfaces)
}

/// The route's address unless it is loopback; then the best interface address: IPv4
/// before IPv6, physical interfaces before container and VM bridges, then in the order
/// listed. Loopback, unspecified, multicast and link-local addresses never qualify.
pub(crate) fn choose(route: IpAddr, interfaces: &[Interface]) -> Advertise {
    if !route.is_loopback() && !route.is_unspecified() {
        return Advertise::Route(route);
    }
    interfaces
        .iter()
        .filter(|i| reachable(i.ip))
        .min_by_key(|i| (is_virtual(&i.name), i.ip.is_ipv6()))
        .map(|i| Advertise::Interface {
            ip: i.ip,
            name: i.name.clone(),
        })
        .unwrap_or(Advertise::LoopbackOnly(if route.is_loopback() {
            route
        } else {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }))
}

fn reachable(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_broadcast(),
        // fe80::/10
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// Bridges and veths of Docker, libvirt and Kubernetes CNIs: reachable from this machine
/// only, so taken last.
fn is_virtual(name: &str) -> bool {
    const PREFIXES: [&str; 10] = [
        "docker", "br-", "veth", "virbr", "cni", "flannel", "cali", "vxlan", "kube", "podman",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// This machine's interface addresses: `list` when given (`NAME=IP,NAME=IP`, the hidden
/// `--interfaces` of tests), else the operating system's.
pub(crate) fn interfaces(list: Option<&str>) -> Result<Vec<Interface>, UsageError> {
    match list {
        Some(text) => parse_interfaces(text),
        None => Ok(system_interfaces()),
    }
}

fn system_interfaces() -> Vec<Interface> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .map(|i| Interface {
                ip: i.ip(),
                name: i.name,
            })
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list network interfaces: {e}");
            Vec::new()
        }
    }
}

fn parse_interfaces(text: &str) -> Result<Vec<Interface>, UsageError> {
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
            Ok(Interface {
                name: name.trim().to_string(),
                ip,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifs(text: &str) -> Vec<Interface> {
        parse_interfaces(text).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_routed_address_is_kept() {
        assert_eq!(
            choose(ip("10.0.0.7"), &ifs("lo=127.0.0.1,eth0=192.168.1.2")),
            Advertise::Route(ip("10.0.0.7"))
        );
    }

    #[test]
    fn loopback_route_takes_an_interface_address() {
        let got = choose(
            ip("127.0.0.1"),
            &ifs(
                "lo=127.0.0.1,docker0=172.17.0.1,eth0=fe80::1,wlan0=2001:db8::5,eth1=192.168.77.5",
            ),
        );
        assert_eq!(
            got,
            Advertise::Interface {
                ip: ip("192.168.77.5"),
                name: "eth1".into()
            }
        );
        // IPv6 of a physical interface beats a Docker bridge's IPv4.
        assert_eq!(
            choose(ip("::1"), &ifs("docker0=172.17.0.1,eth0=2001:db8::5")).ip(),
            ip("2001:db8::5")
        );
        // A bridge is still better than loopback.
        assert_eq!(
            choose(ip("127.0.0.1"), &ifs("lo=127.0.0.1,docker0=172.17.0.1")).ip(),
            ip("172.17.0.1")
        );
    }

    #[test]
    fn only_loopback_or_link_local_stays_loopback() {
        for list in [
            "",
            "lo=127.0.0.1",
            "lo=127.0.0.1,eth0=169.254.3.4,eth0=fe80::2",
        ] {
            assert_eq!(
                choose(ip("127.0.0.1"), &ifs(list)),
                Advertise::LoopbackOnly(ip("127.0.0.1")),
                "{list:?}"
            );
        }
    }

    #[test]
    fn bad_interface_lists_are_usage_errors() {
        assert!(parse_interfaces("eth0").is_err());
        assert!(parse_interfaces("eth0=999.1.1.1").is_err());
        assert_eq!(ifs(" lo = 127.0.0.1 ,")[0].name, "lo");
    }
}
