//! What a load is sent to, and the rule that it is only ever sent to this machine.
//!
//! A [`Target`] is an `http://host:port/path` URL whose host resolves to loopback addresses
//! only, or a Unix socket path (the control plane's `run/api.sock`). Anything else is refused:
//! the load generator is a measuring instrument for a local server, never a traffic source
//! aimed at someone else's.

use anyhow::{Context, bail};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(PathBuf),
}

/// A parsed, checked HTTP target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// The `Host` header to send.
    pub host: String,
    /// Path and query (starts with `/`).
    pub path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]` and checks that every address `host` resolves to is a
    /// loopback address.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("{url}: bad host");
        }
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:80")
        } else {
            authority.to_owned()
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .with_context(|| format!("{url}: cannot resolve {authority}"))?
            .collect();
        let Some(first) = addrs.first().copied() else {
            bail!("{url}: {authority} resolves to nothing");
        };
        if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "{url}: refusing a non-loopback target ({bad}); the load generator only \
                 targets this machine"
            );
        }
        Ok(Target {
            endpoint: Endpoint::Tcp(first),
            host: authority.to_owned(),
            path,
        })
    }

    /// A target on a Unix socket, e.g. the control plane's `run/api.sock`.
    pub fn unix(socket: impl Into<PathBuf>, path: &str) -> Target {
        Target {
            endpoint: Endpoint::Unix(socket.into()),
            host: "localhost".into(),
            path: path.to_owned(),
        }
    }

    /// The same endpoint with another path.
    pub fn with_path(&self, path: &str) -> Target {
        Target {
            path: path.to_owned(),
            ..self.clone()
        }
    }

    /// `http://host` without the path (for messages).
    pub fn base(&self) -> String {
        match &self.endpoint {
            Endpoint::Tcp(_) => format!("http://{}", self.host),
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_only() {
        let t = Target::parse("http://127.0.0.1:9292/v2/images/x/file").unwrap();
        assert_eq!(t.endpoint, Endpoint::Tcp("127.0.0.1:9292".parse().unwrap()));
        assert_eq!(t.host, "127.0.0.1:9292");
        assert_eq!(t.path, "/v2/images/x/file");
        let t = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(t.path, "/");
        let t = Target::parse("http://127.0.0.2:1?limit=25").unwrap();
        assert_eq!(t.path, "/?limit=25");
        let t = Target::parse("http://localhost:9292/v2/images").unwrap();
        assert!(matches!(t.endpoint, Endpoint::Tcp(a) if a.ip().is_loopback()));

        for bad in [
            "http://10.0.0.1:9292/",
            "http://8.8.8.8/",
            "http://[2001:db8::1]:80/",
            "https://127.0.0.1/",
            "ftp://127.0.0.1/",
            "http://user@127.0.0.1/",
            "http:///x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unix_and_paths() {
        let t = Target::unix("/tmp/api.sock", "/v2/images");
        assert_eq!(t.base(), "unix:/tmp/api.sock");
        assert_eq!(t.with_path("/x").path, "/x");
    }
}
