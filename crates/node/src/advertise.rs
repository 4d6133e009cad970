//! The address a node advertises (the `{ip}` of `sollol:gpu:{ip}:11434` and
//! `sollol:rpc:node:{ip}:{port}`): one other nodes can reach.
//!
//! The local address of the route towards Redis is right everywhere except on the
//! machine that runs Redis, where that route is loopback: there a non-loopback interface
//! address is taken instead, and loopback only when the machine has nothing else. The
//! caller finds the route's address and lists the interfaces (both are I/O); this module
//! only chooses.

use std::net::{IpAddr, Ipv4Addr};

/// One address of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetInterface {
    /// The interface's name (`eth0`, `docker0`).
    pub name: String,
    /// One of its addresses.
    pub ip: IpAddr,
}

impl NetInterface {
    /// Address `ip` of interface `name`.
    pub fn new(name: impl Into<String>, ip: IpAddr) -> Self {
        NetInterface {
            name: name.into(),
            ip,
        }
    }
}

/// The advertised address and how it was found (callers log each case differently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvertiseChoice {
    /// The local address of the route towards Redis (not loopback).
    Route(IpAddr),
    /// The route towards Redis is loopback (Redis runs here): this interface's address.
    Interface {
        /// The interface's address.
        ip: IpAddr,
        /// The interface's name.
        name: String,
    },
    /// Nothing but loopback exists: other nodes cannot reach this address.
    LoopbackOnly(IpAddr),
}

impl AdvertiseChoice {
    /// The address to advertise.
    pub fn ip(&self) -> IpAddr {
        match self {
            AdvertiseChoice::Route(ip) | AdvertiseChoice::LoopbackOnly(ip) => *ip,
            AdvertiseChoice::Interface { ip, .. } => *ip,
        }
    }
}

/// The route's address unless it is loopback (or unspecified); then the best interface
/// address: IPv4 before IPv6, physical interfaces before container and VM bridges, then
/// in the order listed. Loopback, unspecified, multicast, broadcast and link-local
/// addresses never qualify; with none left, loopback.
pub fn choose_advertise_ip(route: IpAddr, interfaces: &[NetInterface]) -> AdvertiseChoice {
    if !route.is_loopback() && !route.is_unspecified() {
        return AdvertiseChoice::Route(route);
    }
    interfaces
        .iter()
        .filter(|i| reachable(i.ip))
        .min_by_key(|i| (is_virtual(&i.name), i.ip.is_ipv6()))
        .map(|i| AdvertiseChoice::Interface {
            ip: i.ip,
            name: i.name.clone(),
        })
        .unwrap_or(AdvertiseChoice::LoopbackOnly(if route.is_loopback() {
            route
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    /// `NAME=IP,NAME=IP`.
    fn ifs(text: &str) -> Vec<NetInterface> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(|e| {
                let (name, addr) = e.split_once('=').expect("NAME=IP");
                NetInterface::new(name, ip(addr))
            })
            .collect()
    }

    #[test]
    fn a_routed_address_is_kept() {
        assert_eq!(
            choose_advertise_ip(ip("10.0.0.7"), &ifs("lo=127.0.0.1,eth0=192.168.1.2")),
            AdvertiseChoice::Route(ip("10.0.0.7"))
        );
    }

    #[test]
    fn loopback_route_takes_an_interface_address() {
        let got = choose_advertise_ip(
            ip("127.0.0.1"),
            &ifs(
                "lo=127.0.0.1,docker0=172.17.0.1,eth0=fe80::1,wlan0=2001:db8::5,eth1=192.168.77.5",
            ),
        );
        assert_eq!(
            got,
            AdvertiseChoice::Interface {
                ip: ip("192.168.77.5"),
                name: "eth1".into()
            }
        );
        // IPv6 of a physical interface beats a Docker bridge's IPv4.
        assert_eq!(
            choose_advertise_ip(ip("::1"), &ifs("docker0=172.17.0.1,eth0=2001:db8::5")).ip(),
            ip("2001:db8::5")
        );
        // A bridge is still better than loopback.
        assert_eq!(
            choose_advertise_ip(ip("127.0.0.1"), &ifs("lo=127.0.0.1,docker0=172.17.0.1")).ip(),
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
                choose_advertise_ip(ip("127.0.0.1"), &ifs(list)),
                AdvertiseChoice::LoopbackOnly(ip("127.0.0.1")),
                "{list:?}"
            );
        }
        // An unspecified route with nothing better: IPv4 loopback.
        assert_eq!(
            choose_advertise_ip(ip("0.0.0.0"), &ifs("lo=127.0.0.1")),
            AdvertiseChoice::LoopbackOnly(ip("127.0.0.1"))
        );
    }
}
