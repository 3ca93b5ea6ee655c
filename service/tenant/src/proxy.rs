//! Which proxy (if any) a request to a given URL goes through: the side's configuration and the
//! environment's proxy variables, as a [`ProxyPolicy`] the clients apply to every request.
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
//!
//! The policy is read from the environment and the config when [`proxy_source`] is called; the
//! clients read the [`ProxySource`] it returns each time they (re)connect or log in again, so a
//! policy set later with [`ProxySource::set`] (an admin page, a reload calling [`proxy_policy`]
//! again) applies to the next connection without a restart.

pub use sors_core::proxy::{ProxyPolicy, ProxySource};

use crate::env::Source;

/// The proxy policy of one side: its config value (`[salesforce] proxy`, `[cic] proxy`) and the
/// proxy variables of `env`, read now (the clients judge each request's URL against it).
pub fn proxy_policy(config_value: Option<&str>, env: &dyn Source) -> ProxyPolicy {
    ProxyPolicy {
        configured: config_value
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        https_proxy: first_set(env, &["HTTPS_PROXY", "https_proxy"]),
        http_proxy: first_set(env, &["HTTP_PROXY", "http_proxy"]),
        no_proxy: first_set(env, &["NO_PROXY", "no_proxy"]),
    }
}

/// [`proxy_policy`] as a replaceable source, for the clients' `proxy_source`.
pub fn proxy_source(config_value: Option<&str>, env: &dyn Source) -> ProxySource {
    ProxySource::new(proxy_policy(config_value, env))
}

/// The proxy URL for a request to `target`, or `None` to connect directly (the policy of
/// [`proxy_policy`] applied to one URL).
pub fn effective_proxy(
    config_value: Option<&str>,
    env: &dyn Source,
    target: &str,
) -> Option<String> {
    proxy_policy(config_value, env).for_url(target)
}

fn first_set(env: &dyn Source, names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| env.var(name))
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
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

    #[test]
    fn a_source_takes_a_reloaded_policy() {
        let source = proxy_source(None, &[("HTTPS_PROXY", "http://p:1")]);
        let (v0, p0) = source.current();
        assert_eq!(p0.for_url(SF).as_deref(), Some("http://p:1"));
        assert!(source.set(proxy_policy(
            Some("direct"),
            &[("HTTPS_PROXY", "http://p:1")]
        )));
        let (v1, p1) = source.current();
        assert!(v1 > v0);
        assert_eq!(p1.for_url(SF), None);
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
