//! Which proxy (if any) a request to a given URL goes through.
//!
//! Order: the side's config value (`[salesforce] proxy`, `[cic] proxy`) when set, used for every
//! request of that side; else, unless `NO_PROXY` / `no_proxy` matches the target host, for an
//! `https` target `HTTPS_PROXY`, `https_proxy`, then `HTTP_PROXY`, `http_proxy`; for an `http`
//! target `HTTP_PROXY`, `http_proxy`. Empty variables count as unset.
//!
//! `NO_PROXY` is a comma-separated list of: `*` (no proxy at all); a host name, matching itself
//! and its subdomains (`example.com` and `.example.com` both match `a.example.com`); an IP
//! address; a CIDR block (`10.0.0.0/8`, `fd00::/8`); any of these with `:port` to match that port
//! only. Matching ignores case.

use std::net::IpAddr;

use url::{Host, Url};

use crate::env::Source;

/// The proxy URL for a request to `target`, or `None` to connect directly. An unparsable
/// `target` gets the environment proxy without `NO_PROXY` matching.
pub fn effective_proxy(
    config_value: Option<&str>,
    env: &dyn Source,
    target: &str,
) -> Option<String> {
    if let Some(value) = config_value.map(str::trim).filter(|v| !v.is_empty()) {
        return Some(value.to_owned());
    }
    let url = Url::parse(target).ok();
    if let Some(url) = &url {
        let no_proxy = first_set(env, &["NO_PROXY", "no_proxy"]);
        if no_proxy.is_some_and(|list| no_proxy_matches(&list, url)) {
            return None;
        }
    }
    let names: &[&str] = match url.as_ref().map(Url::scheme) {
        Some("http") => &["HTTP_PROXY", "http_proxy"],
        _ => &["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"],
    };
    first_set(env, names)
}

fn first_set(env: &dyn Source, names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| env.var(name))
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
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
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((ip, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (ip, port);
        }
    }
    if entry.matches(':').count() == 1 {
        if let Some((host, port)) = entry.split_once(':') {
            if let Ok(port) = port.parse() {
                return (host, Some(port));
            }
        }
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

    const SF: &str = "https://acme.my.salesforce.com/services/data";

    #[test]
    fn config_value_wins_over_everything() {
        let env = [("HTTPS_PROXY", "http://envproxy:1"), ("NO_PROXY", "*")];
        assert_eq!(
            effective_proxy(Some("http://cfg:3128"), &env, SF).as_deref(),
            Some("http://cfg:3128")
        );
        // An empty config value means "not set".
        assert_eq!(effective_proxy(Some("  "), &env, SF), None);
    }

    #[test]
    fn env_variables_by_scheme_and_case() {
        let upper = [
            ("HTTPS_PROXY", "http://up:1"),
            ("https_proxy", "http://low:1"),
        ];
        assert_eq!(
            effective_proxy(None, &upper, SF).as_deref(),
            Some("http://up:1")
        );
        let lower = [("https_proxy", "http://low:1")];
        assert_eq!(
            effective_proxy(None, &lower, SF).as_deref(),
            Some("http://low:1")
        );
        // https falls back to the http proxy.
        let http_only = [("http_proxy", "http://plain:1")];
        assert_eq!(
            effective_proxy(None, &http_only, SF).as_deref(),
            Some("http://plain:1")
        );
        // http never uses the https proxy.
        let https_only = [("HTTPS_PROXY", "http://s:1")];
        assert_eq!(
            effective_proxy(None, &https_only, "http://cic1:8018/icws"),
            None
        );
        assert_eq!(
            effective_proxy(None, &http_only, "http://cic1:8018/icws").as_deref(),
            Some("http://plain:1")
        );
        let empty = [("HTTPS_PROXY", ""), ("HTTP_PROXY", "http://h:1")];
        assert_eq!(
            effective_proxy(None, &empty, SF).as_deref(),
            Some("http://h:1")
        );
        let none: [(&str, &str); 0] = [];
        assert_eq!(effective_proxy(None, &none, SF), None);
    }

    fn bypassed(no_proxy: &str, target: &str) -> bool {
        let env = [
            ("HTTPS_PROXY", "http://p:1"),
            ("HTTP_PROXY", "http://p:1"),
            ("no_proxy", no_proxy),
        ];
        effective_proxy(None, &env, target).is_none()
    }

    #[test]
    fn no_proxy_rules() {
        assert!(bypassed("*", SF));
        assert!(bypassed("salesforce.com", SF));
        assert!(bypassed(".salesforce.com", SF));
        assert!(bypassed("*.salesforce.com", SF));
        assert!(bypassed("localhost, ACME.MY.SALESFORCE.COM", SF));
        assert!(
            !bypassed("force.com", SF),
            "suffix must end on a label boundary"
        );
        assert!(!bypassed("alesforce.com", SF));
        assert!(!bypassed("example.com", SF));
        assert!(bypassed("10.0.0.0/8", "http://10.1.2.3:8018/icws"));
        assert!(!bypassed("10.0.0.0/8", "http://11.1.2.3:8018/icws"));
        assert!(bypassed("10.1.2.3", "http://10.1.2.3:8018/icws"));
        assert!(bypassed("cic1:8018", "http://cic1:8018/icws"));
        assert!(!bypassed("cic1:8019", "http://cic1:8018/icws"));
        assert!(
            bypassed("cic1:443", "https://cic1/icws"),
            "default port counts"
        );
        assert!(bypassed("::1", "http://[::1]:8018/"));
        assert!(bypassed("[::1]:8018", "http://[::1]:8018/"));
        assert!(bypassed("fd00::/8", "http://[fd12::1]:8018/"));
        assert!(!bypassed("fd00::/8", "http://[fe80::1]:8018/"));
        assert!(bypassed("0.0.0.0/0", "http://1.2.3.4/"));
        assert!(!bypassed("", SF));
    }
}
