//! Which proxy, if any, a request goes through: decided per request from its own URL, so the
//! Salesforce instance host and the backup CIC server honour `NO_PROXY` as much as the login
//! host and the primary server do. Pure: the values come from the configuration and the
//! environment, read by the caller.
//!
//! Order: the side's configured proxy when set (`"direct"`: none), used for every request of that
//! side; else, unless `no_proxy` matches the target, for an `https` target `https_proxy`, then
//! `http_proxy`; for an `http` target `http_proxy`.
//!
//! `no_proxy` is a comma-separated list of: `*` (no proxy at all); a host name, matching itself
//! and its subdomains (`example.com` and `.example.com` both match `a.example.com`); an IP
//! address; a CIDR block (`10.0.0.0/8`, `fd00::/8`); any of these with `:port` to match that port
//! only. Matching ignores case.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// The proxy settings of one side (Salesforce or CIC).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// The side's own setting (`[salesforce] proxy`, `[cic] proxy`): every request of the side
    /// goes through it; `"direct"` means none at all.
    pub configured: Option<String>,
    /// `HTTPS_PROXY` / `https_proxy`.
    pub https_proxy: Option<String>,
    /// `HTTP_PROXY` / `http_proxy`.
    pub http_proxy: Option<String>,
    /// `NO_PROXY` / `no_proxy`.
    pub no_proxy: Option<String>,
}

impl ProxyPolicy {
    /// Always direct.
    pub fn direct() -> Self {
        ProxyPolicy {
            configured: Some("direct".into()),
            ..ProxyPolicy::default()
        }
    }

    /// One proxy for every request.
    pub fn always(proxy: impl Into<String>) -> Self {
        ProxyPolicy {
            configured: Some(proxy.into()),
            ..ProxyPolicy::default()
        }
    }

    /// The proxy URL for a request to `target`, or `None` to connect directly. An unparsable
    /// `target` gets the environment proxy without `no_proxy` matching.
    pub fn for_url(&self, target: &str) -> Option<String> {
        if let Some(value) = set(&self.configured) {
            return (value != "direct").then(|| value.to_owned());
        }
        let url = Url::parse(target).ok();
        if let (Some(url), Some(list)) = (&url, set(&self.no_proxy))
            && no_proxy_matches(list, url) {
                return None;
            }
        match url.as_ref().map(Url::scheme) {
            Some("http") => set(&self.http_proxy).map(str::to_owned),
            _ => set(&self.https_proxy)
                .or_else(|| set(&self.http_proxy))
                .map(str::to_owned),
        }
    }

    /// True when no request can go through a proxy.
    pub fn is_direct(&self) -> bool {
        match set(&self.configured) {
            Some(v) => v == "direct",
            None => set(&self.https_proxy).is_none() && set(&self.http_proxy).is_none(),
        }
    }
}

/// Never shows a proxy's user name or password.
impl fmt::Debug for ProxyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| match v.as_deref() {
            None => "-".to_owned(),
            Some(p) if p.contains('@') => "<proxy with credentials>".to_owned(),
            Some(p) => p.to_owned(),
        };
        f.debug_struct("ProxyPolicy")
            .field("configured", &show(&self.configured))
            .field("https_proxy", &show(&self.https_proxy))
            .field("http_proxy", &show(&self.http_proxy))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn no_proxy_matches(list: &str, url: &Url) -> bool {
    let Some(host) = url.host() else { return false };
    let port = url.port_or_known_default();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| entry_matches(entry, &host, port))
}

fn entry_matches(entry: &str, host: &Host<&str>, port: Option<u16>) -> bool {
    if entry == "*" {
        return true;
    }
    let (pattern, entry_port) = split_port(entry);
    if entry_port.is_some() && entry_port != port {
        return false;
    }
    let host_ip = match host {
        Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        Host::Domain(_) => None,
    };
    if let Some((net, bits)) = pattern.split_once('/') {
        return match (host_ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if let Ok(ip) = pattern.parse::<IpAddr>() {
        return host_ip == Some(ip);
    }
    let Host::Domain(domain) = host else {
        return false;
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    !pattern.is_empty()
        && (domain == pattern
            || domain
                .strip_suffix(&pattern)
                .is_some_and(|rest| rest.ends_with('.')))
}

/// Splits `host:port`, `[v6]:port`, `[v6]`, a bare IPv6 address, or `host`.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[')
        && let Some((ip, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (ip, port);
        }
    if entry.matches(':').count() == 1
        && let Some((host, port)) = entry.split_once(':')
            && let Ok(port) = port.parse() {
                return (host, Some(port));
            }
    (entry, None)
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_judged_by_its_own_host() {
        let p = ProxyPolicy {
            https_proxy: Some("http://proxy:3128".into()),
            http_proxy: Some("http://proxy:3128".into()),
            no_proxy: Some("acme.my.salesforce.com, 10.0.0.0/8, cic2".into()),
            ..ProxyPolicy::default()
        };
        // the login host goes through, the instance host it answers with does not
        assert_eq!(
            p.for_url("https://login.salesforce.com/services/Soap/u/62.0")
                .as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(
            p.for_url("https://acme.my.salesforce.com/services/data"),
            None
        );
        // the primary CIC server goes through, the backup does not (by name, by CIDR)
        assert!(p.for_url("https://cic1:8019/icws/connection").is_some());
        assert_eq!(p.for_url("https://cic2:8019/icws/connection"), None);
        assert_eq!(p.for_url("http://10.1.2.3:8018/icws"), None);
        assert!(!p.is_direct());
    }

    #[test]
    fn a_configured_proxy_wins_and_direct_means_none() {
        let env = ProxyPolicy {
            https_proxy: Some("http://env:1".into()),
            no_proxy: Some("*".into()),
            ..ProxyPolicy::default()
        };
        let configured = ProxyPolicy {
            configured: Some("http://cfg:3128".into()),
            ..env.clone()
        };
        assert_eq!(
            configured.for_url("https://x.example/").as_deref(),
            Some("http://cfg:3128")
        );
        assert_eq!(ProxyPolicy::direct().for_url("https://x.example/"), None);
        assert!(ProxyPolicy::direct().is_direct());
        assert!(ProxyPolicy::default().is_direct());
        assert_eq!(env.for_url("https://x.example/"), None, "NO_PROXY=*");
    }

    #[test]
    fn debug_hides_proxy_credentials() {
        let p = ProxyPolicy::always("http://user:secretpw@proxy:3128");
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("secretpw"), "{dbg}");
    }
}
