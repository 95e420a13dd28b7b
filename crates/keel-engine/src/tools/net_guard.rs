//! The SSRF guard of HTTP tools: a tool reaches public addresses only, unless its definition
//! names the private ranges it may reach (`allow_private`). The guard is the HTTP client's
//! resolver, so a connection goes only to addresses it vetted (a name cannot resolve to a
//! public address when checked and a private one when used); literal addresses in URLs, which
//! no resolver sees, are checked before each request and each redirect hop.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which addresses one tool may reach: every public one, and the private ones in its ranges.
#[derive(Debug)]
pub(crate) struct AddressPolicy {
    allowed: Vec<IpRange>,
}

impl AddressPolicy {
    /// The policy of a tool allowing `ranges` (CIDR, or one address); an error names a range
    /// that does not parse.
    pub(crate) fn new(ranges: &[String]) -> Result<AddressPolicy, String> {
        let allowed = ranges
            .iter()
            .map(|r| IpRange::parse(r))
            .collect::<Result<_, _>>()?;
        Ok(AddressPolicy { allowed })
    }

    /// `Ok` for a public address or one in an allowed range.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = ip.to_canonical();
        match special_class(ip) {
            Some(class) if !self.allowed.iter().any(|r| r.contains(ip)) => Err(Refused {
                target: ip.to_string(),
                reason: class,
            }),
            _ => Ok(()),
        }
    }

    /// Checks what can be checked without resolving: the scheme, and a host that is an
    /// address (the URL parser has already read `0x7f.1` or `2130706433` as 127.0.0.1).
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused {
                target: url.to_string(),
                reason: "not an http or https URL",
            });
        }
        let Some(host) = url.host_str() else {
            return Err(Refused {
                target: url.to_string(),
                reason: "a URL without a host",
            });
        };
        // IPv6 hosts come bracketed; anything else that parses as an address is one.
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => self.check(ip),
            Err(_) => Ok(()),
        }
    }
}

/// A destination the guard will not connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// The address (or URL) refused.
    pub target: String,
    /// What kind of address it is.
    pub reason: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "keel refused to connect to {} ({}); a tool reaches such an address only when its \
             definition allows the range (`allow_private`)",
            self.target, self.reason
        )
    }
}

impl std::error::Error for Refused {}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub(crate) fn special_class(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(ip) => v4_class(ip),
        IpAddr::V6(ip) => v6_class(ip),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "an unspecified address",
        (127, ..) => "a loopback address",
        (10, ..) | (192, 168, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (169, 254, _) => "a link-local or cloud metadata address",
        (100, 64..=127, _) => "a shared (CGNAT) address",
        (192, 0, 0) => "an IETF protocol address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, ..) => "a multicast address",
        (240..=255, ..) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // An IPv4 address carried inside: IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and
    // 6to4 (2002::/16) reach it, so it is judged as itself.
    let embedded = match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some((hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some((hi, lo)),
        [0x2002, hi, lo, ..] => Some((hi, lo)),
        _ => None,
    };
    if let Some((hi, lo)) = embedded {
        let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return v4_class(v4).map(|_| "an IPv6 address carrying a non-public IPv4 address");
    }
    Some(match s[0] {
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xfc00..=0xfdff => "a unique-local (private) address",
        0xff00..=0xffff => "a multicast address",
        0x0100 if s[1..4] == [0, 0, 0] => "a discard-only address",
        0x2001 if s[1] == 0 => "a Teredo address",
        0x2001 if s[1] == 0x0db8 => "a documentation address",
        _ => return None,
    })
}

/// A CIDR range (`10.0.0.0/8`, `fd00::/8`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl IpRange {
    fn parse(text: &str) -> Result<IpRange, String> {
        let bad = |why: &str| {
            format!(
                "`allow_private` range {text:?} {why}; write e.g. \"127.0.0.0/8\" or \"fd00::/8\""
            )
        };
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let base: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| bad("is not an IP address or CIDR range"))?;
        let bits = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= bits => p,
                _ => return Err(bad(&format!("has a prefix length past {bits}"))),
            },
        };
        Ok(IpRange { base, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip.to_canonical()) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => same_prefix(
                u32::from(base).into(),
                u32::from(ip).into(),
                32,
                self.prefix,
            ),
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                same_prefix(base.into(), ip.into(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `bits` bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix);
    shift >= 128 || (a >> shift) == (b >> shift)
}

/// The HTTP client's resolver: resolves as the system does, then refuses a name if any of its
/// addresses is one the policy refuses.
#[derive(Debug)]
pub(crate) struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                policy.check(addr.ip()).map_err(|refused| Refused {
                    target: format!("{host} (which resolves to {})", refused.target),
                    reason: refused.reason,
                })?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client that connects only where `policy` allows: the guard is its resolver, it
/// follows no redirect (a caller that follows one checks the next hop itself) and uses no proxy
/// (a proxy would resolve the name itself, past the guard).
pub(crate) fn guarded_client(policy: Arc<AddressPolicy>) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .build()
        .map_err(|e| format!("the HTTP client could not be built: {e}"))
}

/// The `Refused` somewhere in an error's chain of sources, if the guard is why it failed.
pub(crate) fn refusal_in<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        let policy = AddressPolicy::new(&[]).unwrap();
        policy.check_url(&Url::parse(url).unwrap()).is_err()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://127.8.9.10:8080/x",
            "http://[::1]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[fd00:ec2::254]/",
            "http://[ff02::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[::127.0.0.1]/",
            "ftp://example.com/",
            "file:///etc/passwd",
        ] {
            assert!(refused(url), "{url} was let through");
        }
    }

    #[test]
    fn numeric_spellings_of_loopback_are_read_as_loopback() {
        // Hex, short, decimal and octal forms: the URL parser normalises each to 127.0.0.1
        // before the guard looks, so none slips past as a "name".
        for url in [
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://017700000001/",
        ] {
            let parsed = Url::parse(url).unwrap();
            assert_eq!(parsed.host_str(), Some("127.0.0.1"), "{url}");
            assert!(refused(url), "{url} was let through");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_url_check() {
        for url in [
            "http://8.8.8.8/",
            "https://1.1.1.1/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2606:4700::1111]/",
            "http://[64:ff9b::808:808]/",
            "https://example.com/",
        ] {
            assert!(!refused(url), "{url} was refused");
        }
    }

    #[test]
    fn an_allowed_range_lets_its_addresses_through_and_no_others() {
        let policy =
            AddressPolicy::new(&["127.0.0.0/8".into(), "fd00::/8".into(), "10.1.2.3".into()])
                .unwrap();
        let ok = |ip: &str| policy.check(ip.parse().unwrap()).is_ok();
        assert!(ok("127.0.0.1") && ok("127.255.0.9") && ok("::ffff:127.0.0.1"));
        assert!(ok("fd12::1") && ok("10.1.2.3"));
        assert!(!ok("10.1.2.4") && !ok("::1") && !ok("169.254.169.254") && !ok("fc00::1"));
        let all = AddressPolicy::new(&["0.0.0.0/0".into()]).unwrap();
        assert!(all.check("10.9.9.9".parse().unwrap()).is_ok());
    }

    #[test]
    fn a_range_that_does_not_parse_is_named() {
        for bad in ["127.0.0.0/33", "localhost", "::1/129", "10.0.0.0/x"] {
            let error = AddressPolicy::new(&[bad.into()]).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_by_the_resolver() {
        let resolver = GuardedResolver {
            policy: Arc::new(AddressPolicy::new(&[]).unwrap()),
        };
        let name: Name = "localhost".parse().unwrap();
        let error = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(e) => e,
        };
        let refused = refusal_in(error.as_ref()).expect("the guard's refusal");
        assert!(refused.target.starts_with("localhost"), "{refused}");
        let allowing = GuardedResolver {
            policy: Arc::new(AddressPolicy::new(&["127.0.0.0/8".into(), "::1".into()]).unwrap()),
        };
        let addrs: Vec<_> = allowing
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
