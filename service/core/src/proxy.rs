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
//!
//! A policy can change while the service runs: [`ProxySource`] holds the current one, and the
//! clients read it each time they connect or log in again, so a new policy applies to the next
//! connection. Errors name the proxy a request went through, never its credentials
//! ([`without_credentials`], [`ProxyPolicy::refusal`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

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
            && no_proxy_matches(list, url)
        {
            return None;
        }
        match url.as_ref().map(Url::scheme) {
            Some("http") => set(&self.http_proxy).map(str::to_owned),
            _ => set(&self.https_proxy)
                .or_else(|| set(&self.http_proxy))
                .map(str::to_owned),
        }
    }

    /// The proxy a request to `target` goes through, without its credentials (for messages),
    /// or `None` when it goes direct.
    pub fn shown_for(&self, target: &str) -> Option<String> {
        self.for_url(target).map(|p| without_credentials(&p))
    }

    /// When a request to `target` went through a proxy and its answer is the proxy's own
    /// refusal ([`is_proxy_refusal`]), the message that says so, naming the proxy without its
    /// credentials; else `None` (the answer is the target's).
    pub fn refusal(
        &self,
        target: &str,
        status: u16,
        proxy_authenticate: bool,
        via: bool,
    ) -> Option<String> {
        let proxy = self.shown_for(target)?;
        if !is_proxy_refusal(status, proxy_authenticate, via) {
            return None;
        }
        let hint = match status {
            403 => "the proxy does not serve this client or this target port",
            _ => "proxy authentication failed: check the user name and password in the proxy URL",
        };
        Some(format!(
            "proxy {proxy} refused the request (HTTP {status}): {hint}"
        ))
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

/// Whether an error answer to a request sent through a proxy is the proxy's own refusal rather
/// than the target's answer: a 407 (Proxy Authentication Required), a `Proxy-Authenticate`
/// challenge, or a 401 / 403 without a `Via` header (a proxy marks every answer it relays with
/// `Via`, RFC 9110 §7.6.3; tinyproxy refuses a wrong proxy password with a plain 401).
pub fn is_proxy_refusal(status: u16, proxy_authenticate: bool, via: bool) -> bool {
    status == 407 || proxy_authenticate || (matches!(status, 401 | 403) && !via)
}

/// A proxy URL without its user name and password: `http://user:pw@proxy:3128` gives
/// `http://proxy:3128`. Also for values without a scheme (`user:pw@proxy:3128`).
pub fn without_credentials(proxy: &str) -> String {
    let (scheme, rest) = match proxy.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, proxy),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let tail = tail.trim_end_matches('/');
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{tail}"),
        None => format!("{host}{tail}"),
    }
}

/// The proxy policy of one side, replaceable while the service runs (an admin page, a reload).
/// Cheap to clone; clones share the policy. The clients read it when they (re)connect or log in
/// again and rebuild their HTTP connection pool when its version changed, so a new policy
/// applies to the next connection, never to one already open.
#[derive(Clone, Default)]
pub struct ProxySource {
    inner: Arc<RwLock<(u64, Arc<ProxyPolicy>)>>,
}

impl ProxySource {
    pub fn new(policy: ProxyPolicy) -> Self {
        ProxySource {
            inner: Arc::new(RwLock::new((0, Arc::new(policy)))),
        }
    }

    /// The current policy and its version (which grows by one with each change).
    pub fn current(&self) -> (u64, Arc<ProxyPolicy>) {
        let guard = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        (guard.0, guard.1.clone())
    }

    /// Replaces the policy; returns false (and keeps the version) when it is the same one.
    pub fn set(&self, policy: ProxyPolicy) -> bool {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if *guard.1 == policy {
            return false;
        }
        *guard = (guard.0 + 1, Arc::new(policy));
        true
    }
}

/// Shows the version and the policy, never a proxy's credentials.
impl fmt::Debug for ProxySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (version, policy) = self.current();
        f.debug_struct("ProxySource")
            .field("version", &version)
            .field("policy", &policy)
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
        && let Some((ip, after)) = rest.split_once(']')
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (ip, port);
    }
    if entry.matches(':').count() == 1
        && let Some((host, port)) = entry.split_once(':')
        && let Ok(port) = port.parse()
    {
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
    fn credentials_never_shown() {
        assert_eq!(
            without_credentials("http://user:pw@127.0.0.1:3128"),
            "http://127.0.0.1:3128"
        );
        assert_eq!(
            without_credentials("http://u:p@w@proxy:3128/"),
            "http://proxy:3128"
        );
        assert_eq!(without_credentials("user:pw@proxy:3128"), "proxy:3128");
        assert_eq!(
            without_credentials("http://proxy:3128"),
            "http://proxy:3128"
        );
        let p = ProxyPolicy {
            https_proxy: Some("http://user:secretpw@proxy:3128".into()),
            no_proxy: Some("direct.example".into()),
            ..ProxyPolicy::default()
        };
        assert_eq!(
            p.shown_for("https://x.example/").as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(p.shown_for("https://direct.example/"), None);
        let msg = p
            .refusal("https://x.example/", 407, true, false)
            .unwrap_or_default();
        assert!(
            msg.contains("http://proxy:3128") && msg.contains("407"),
            "{msg}"
        );
        assert!(!msg.contains("secretpw"), "{msg}");
    }

    #[test]
    fn refusals_are_the_proxys_own_answers() {
        assert!(is_proxy_refusal(407, false, true));
        assert!(is_proxy_refusal(400, true, false));
        // tinyproxy: a wrong proxy password is a 401 of its own, without Via
        assert!(is_proxy_refusal(401, false, false));
        assert!(is_proxy_refusal(403, false, false));
        // relayed answers of the target carry Via
        assert!(!is_proxy_refusal(401, false, true));
        assert!(!is_proxy_refusal(403, false, true));
        assert!(!is_proxy_refusal(500, false, false));
        // a direct request is never refused by a proxy
        assert_eq!(
            ProxyPolicy::direct().refusal("https://x.example/", 407, true, false),
            None
        );
    }

    #[test]
    fn a_source_changes_version_only_on_change() {
        let source = ProxySource::new(ProxyPolicy::direct());
        let (v0, p0) = source.current();
        assert!(p0.is_direct());
        assert!(!source.set(ProxyPolicy::direct()));
        assert_eq!(source.current().0, v0);
        let clone = source.clone();
        assert!(clone.set(ProxyPolicy::always("http://u:secretpw@proxy:1")));
        let (v1, p1) = source.current();
        assert_eq!(v1, v0 + 1);
        assert!(!p1.is_direct());
        let dbg = format!("{source:?}");
        assert!(!dbg.contains("secretpw"), "{dbg}");
    }

    #[test]
    fn debug_hides_proxy_credentials() {
        let p = ProxyPolicy::always("http://user:secretpw@proxy:3128");
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("secretpw"), "{dbg}");
    }
}
