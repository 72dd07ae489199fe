//! Where webhooks may send: the SSRF guard.
//!
//! A webhook URL names a host the server will connect to from inside the cluster, so a
//! caller who may create webhooks must not reach what only the server can: the cloud
//! metadata endpoint, the pod network, the node's own ports. Only `http(s)` URLs are
//! taken; their addresses must be public unicast, unless the operator allows a network
//! (`--webhook-allow-networks`) or, in dev mode, loopback. The check runs on the addresses
//! the connection actually uses (the resolver below filters them), so a name that resolves
//! to a public address when created and a private one later (DNS rebinding) is refused too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use scaivault_api::webhooks::MAX_WEBHOOK_URL_CHARS;
use url::Url;

/// Which destination addresses are allowed.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Networks allowed although they are not public (an in-cluster receiver).
    pub allowed: Vec<IpNet>,
    /// Loopback allowed (dev mode only).
    pub loopback: bool,
}

/// Special-purpose ranges without a std predicate (stable) that a webhook must not reach:
/// shared address space (carrier NAT), IETF protocol assignments, benchmarking, the
/// reserved 240/4, and IPv6's unique-local (fc00::/7, the metadata service's IPv6 home on
/// some clouds), link-local, discard and documentation prefixes.
const REFUSED_NETWORKS: &[&str] = &[
    "0.0.0.0/8",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "198.18.0.0/15",
    "240.0.0.0/4",
    "fc00::/7",
    "fe80::/10",
    "100::/64",
    "2001:db8::/32",
];

fn is_public(ip: IpAddr) -> bool {
    let special = REFUSED_NETWORKS
        .iter()
        .filter_map(|n| n.parse::<IpNet>().ok())
        .any(|net| net.contains(&ip));
    let refused_by_std = match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || v4.is_unspecified()
        }
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_multicast() || v6.is_unspecified(),
    };
    !special && !refused_by_std
}

impl AddressPolicy {
    /// Whether a connection to `ip` is allowed. An IPv4 address written as IPv6
    /// (`::ffff:a.b.c.d`) is judged as the IPv4 address it is.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        if ip.is_loopback() {
            return self.loopback;
        }
        is_public(ip)
    }

    /// Checks a webhook URL as written: scheme, no credentials, and an address literal's
    /// address (names are checked when they resolve). The error says why, for the caller.
    pub fn check_url(&self, text: &str) -> Result<Url, String> {
        if text.chars().count() > MAX_WEBHOOK_URL_CHARS {
            return Err(format!(
                "url is longer than {MAX_WEBHOOK_URL_CHARS} characters"
            ));
        }
        let url = Url::parse(text).map_err(|e| format!("url is not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("url must be http:// or https://".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "url must not carry credentials; the signature authenticates the server".to_owned(),
            );
        }
        if url.fragment().is_some() {
            return Err("url must not have a #fragment".to_owned());
        }
        let refused = || {
            Err(
                "url's address is private, loopback, link-local or reserved; an operator can \
                 allow its network with --webhook-allow-networks"
                    .to_owned(),
            )
        };
        match url.host() {
            None => Err("url has no host".to_owned()),
            Some(url::Host::Ipv4(ip)) if !self.permits(IpAddr::V4(ip)) => refused(),
            Some(url::Host::Ipv6(ip)) if !self.permits(IpAddr::V6(ip)) => refused(),
            Some(url::Host::Domain(name)) if is_local_name(name) && !self.loopback => refused(),
            Some(_) => Ok(url),
        }
    }
}

/// `localhost` names resolve to loopback without asking DNS.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The resolver of the webhook client: the system's, keeping only allowed addresses.
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| policy.permits(addr.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves to no address a webhook may reach (private, loopback, \
                     link-local or reserved)"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn only_public_unicast_by_default() {
        let policy = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused} was permitted");
        }
        for allowed in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(policy.permits(ip(allowed)), "{allowed} was refused");
        }
    }

    #[test]
    fn allowed_networks_and_dev_loopback_open_exactly_themselves() {
        let policy = AddressPolicy {
            allowed: vec!["10.96.0.0/12".parse().unwrap_or_else(|_| unreachable!())],
            loopback: true,
        };
        assert!(policy.permits(ip("10.96.0.10")));
        assert!(!policy.permits(ip("10.0.0.1")));
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(!policy.permits(ip("169.254.169.254")));
    }

    #[test]
    fn urls_are_checked_as_written() {
        let policy = AddressPolicy::default();
        assert!(policy.check_url("https://ops.example.com/hook").is_ok());
        for bad in [
            "ftp://ops.example.com/",
            "file:///etc/passwd",
            "https://user:pw@ops.example.com/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:8080/",
            "http://localhost:8080/",
            "http://10.0.0.1/",
            "not a url",
        ] {
            assert!(policy.check_url(bad).is_err(), "{bad} was accepted");
        }
    }
}
