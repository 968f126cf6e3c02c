//! Which `web-download` sources an import may fetch: the one owner of the rule both planes
//! apply (the control plane when the import is asked, the data plane before every connection
//! and every redirect).
//!
//! Two checks:
//!
//! 1. [`uri_passes`], Glance's `validate_import_uri` with its `[import_filtering_opts]`
//!    (`allowed_schemes`, `disallowed_schemes`, `allowed_hosts`, `disallowed_hosts`,
//!    `allowed_ports`, `disallowed_ports`; an allowed list, when set, wins over its disallowed
//!    one). The host is compared in its normalized form (the WHATWG URL parser's: `127.1` and
//!    `0x7f000001` are `127.0.0.1`), so encoded addresses cannot slip past a host list.
//! 2. [`address_allowed`], beyond Glance (which checks only the host name string): every
//!    address the host resolves to must be outside `disallowed_networks` (by default
//!    loopback, link-local with the cloud metadata address, unspecified, private, shared,
//!    multicast and reserved ranges) unless it is inside `allowed_networks`. The data plane
//!    resolves once, checks every address, and connects to a checked address, so a name that
//!    resolves differently a moment later (DNS rebinding) cannot reach a forbidden one.

use crate::config::ImportFiltering;
use std::net::IpAddr;

/// [`uri_passes`] of a URI as the client gave it (one that does not parse fails).
pub fn uri_text_passes(opts: &ImportFiltering, uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| uri_passes(opts, &u))
}

/// Glance's `validate_import_uri`: whether `uri` passes the scheme, host and port lists.
pub fn uri_passes(opts: &ImportFiltering, uri: &url::Url) -> bool {
    let pick = |allowed: &[String], disallowed: &[String], v: &str| {
        if allowed.is_empty() {
            !disallowed.iter().any(|d| d.eq_ignore_ascii_case(v))
        } else {
            allowed.iter().any(|a| a.eq_ignore_ascii_case(v))
        }
    };
    if !pick(
        &opts.allowed_schemes,
        &opts.disallowed_schemes,
        uri.scheme(),
    ) {
        return false;
    }
    let host = match uri.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return false,
    };
    if !pick(&opts.allowed_hosts, &opts.disallowed_hosts, &host) {
        return false;
    }
    // Glance checks the port only when the URI names one
    if let Some(port) = uri.port() {
        let ok = if opts.allowed_ports.is_empty() {
            !opts.disallowed_ports.contains(&port)
        } else {
            opts.allowed_ports.contains(&port)
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a resolved address of a `web-download` source may be connected to: inside
/// `allowed_networks`, or outside `disallowed_networks`. IPv4-mapped IPv6 addresses are
/// judged as the IPv4 address they carry.
pub fn address_allowed(opts: &ImportFiltering, addr: IpAddr) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let within = |nets: &[String]| {
        nets.iter()
            .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
            .any(|n| n.contains(&addr))
    };
    within(&opts.allowed_networks) || !within(&opts.disallowed_networks)
}

/// The networks a `web-download` source may not be in unless allowed: what a server's own
/// side of the network looks like (loopback, link-local with 169.254.169.254, private and
/// shared address space, unique-local, multicast, unspecified and reserved ranges).
pub const DISALLOWED_NETWORKS: [&str; 17] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b::/96",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn glances_lists() {
        let d = ImportFiltering::default();
        assert!(uri_passes(&d, &url("http://example.com/x.img")));
        assert!(uri_passes(&d, &url("https://example.com:443/x.img")));
        assert!(!uri_passes(&d, &url("ftp://example.com/x.img")));
        assert!(!uri_passes(&d, &url("file:///etc/passwd")));
        assert!(!uri_passes(&d, &url("http://example.com:8080/x.img")));
        let mut o = ImportFiltering {
            disallowed_hosts: vec!["bad.example".into(), "127.0.0.1".into()],
            ..ImportFiltering::default()
        };
        assert!(!uri_passes(&o, &url("http://BAD.example/x")));
        // an encoded address is compared normalized
        assert!(!uri_passes(&o, &url("http://0x7f000001/x")));
        assert!(!uri_passes(&o, &url("http://127.1/x")));
        // an allowed list wins over the disallowed one
        o.allowed_hosts = vec!["bad.example".into()];
        assert!(uri_passes(&o, &url("http://bad.example/x")));
        assert!(!uri_passes(&o, &url("http://good.example/x")));
        o.allowed_ports = vec![];
        o.disallowed_ports = vec![8080];
        assert!(uri_passes(&o, &url("http://bad.example:9000/x")));
        assert!(!uri_passes(&o, &url("http://bad.example:8080/x")));
    }

    #[test]
    fn addresses_of_the_servers_own_side_are_refused() {
        let d = ImportFiltering::default();
        for a in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "192.168.0.1",
            "172.20.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!address_allowed(&d, a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(address_allowed(&d, a.parse().unwrap()), "{a}");
        }
        let o = ImportFiltering {
            allowed_networks: vec!["127.0.0.2/32".into()],
            ..ImportFiltering::default()
        };
        assert!(address_allowed(&o, "127.0.0.2".parse().unwrap()));
        assert!(!address_allowed(&o, "127.0.0.1".parse().unwrap()));
    }
}
