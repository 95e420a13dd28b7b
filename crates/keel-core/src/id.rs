//! Prefixed, sortable ids (`ses_…`, `run_…`): a prefix plus a ULID (48-bit millisecond time,
//! 80 random bits, Crockford base32), so ids sort by creation time. The caller supplies the
//! time and the randomness; this module only encodes and validates.

use serde::{Deserialize, Serialize};
use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ULID_LEN: usize = 26;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {value:?}: expected `{prefix}` followed by 26 base32 characters")]
pub struct IdError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

/// Encodes `millis` and 80 bits of `random` as a 26-character ULID.
pub fn ulid(millis: u64, random: u128) -> String {
    let value: u128 =
        (u128::from(millis & 0xFFFF_FFFF_FFFF) << 80) | (random & ((1u128 << 80) - 1));
    (0..ULID_LEN)
        .map(|i| ALPHABET[((value >> (5 * (ULID_LEN - 1 - i))) & 31) as usize] as char)
        .collect()
}

fn is_ulid(s: &str) -> bool {
    s.len() == ULID_LEN
        && s.bytes()
            .all(|c| ALPHABET.contains(&c.to_ascii_uppercase()))
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id from a time and random bits the caller drew.
            pub fn generate(millis: u64, random: u128) -> Self {
                $name(format!("{}{}", $prefix, ulid(millis, random)))
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                match s.strip_prefix($prefix) {
                    Some(rest) if is_ulid(rest) => Ok($name(s.to_string())),
                    _ => Err(IdError { kind: $kind, prefix: $prefix, value: s.to_string() }),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
        }
    };
}

prefixed_id!(/// A tenant: the isolation boundary.
    TenantId, "ten_", "tenant");
prefixed_id!(/// An agent definition (all its versions share the id).
    AgentId, "agt_", "agent");
prefixed_id!(/// A session: one long-lived conversation with its own event log.
    SessionId, "ses_", "session");
prefixed_id!(/// A run: one unit of work on a session.
    RunId, "run_", "run");
prefixed_id!(/// A timer: a schedule that starts runs on a session.
    TimerId, "tmr_", "timer");
prefixed_id!(/// A webhook: an inbound trigger URL or an outbound subscription of a tenant.
    WebhookId, "whk_", "webhook");

impl TenantId {
    /// The tenant that owns everything on a single-user install.
    pub fn default_tenant() -> Self {
        TenantId(format!("ten_{}", "0".repeat(ULID_LEN)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = SessionId::generate(1_000, u128::MAX);
        let b = SessionId::generate(1_001, 0);
        assert!(a < b);
        assert_eq!(SessionId::parse(a.as_str()).unwrap(), a);
        assert!(SessionId::parse("run_01J00000000000000000000000").is_err());
        assert!(SessionId::parse("ses_short").is_err());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), a);
        assert!(serde_json::from_str::<SessionId>("\"ses_bad\"").is_err());
    }
}
