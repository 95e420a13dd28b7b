//! The one signature scheme of keel's webhooks, both ways, like Stripe's: the header
//! `Keel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`.
//! The time is signed with the body, so a captured call cannot be replayed once the window is
//! over, and within it the store remembers each signature used (`Store::remember_signature`).
//! `docs/webhooks.md` shows a receiver how to check it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Keel-Signature";
/// How far a signed time may be from now, either way: a call older is refused as a replay.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// The `Keel-Signature` value for `body` sent at `unix_seconds`.
pub fn sign(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac(secret, unix_seconds, body))
    )
}

fn mac(secret: &str, unix_seconds: i64, body: &[u8]) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// A signature that cannot admit a call, and why (said to the caller: nothing secret in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSignature {
    #[error("the call carries no {SIGNATURE_HEADER} header, and this webhook requires one")]
    Missing,
    #[error(
        "the {SIGNATURE_HEADER} header is not of the form t=<unix seconds>,v1=<hex HMAC-SHA256>"
    )]
    Malformed,
    #[error(
        "the {SIGNATURE_HEADER} time is more than {REPLAY_WINDOW_SECS} seconds from keel's clock: sign each call when you send it"
    )]
    Stale,
    #[error("the {SIGNATURE_HEADER} does not match the body under this webhook's secret")]
    Mismatch,
}

/// Checks `header` against `body` at `now_secs`: `Ok` when one of its `v1` signatures (a
/// sender rotating secrets may send several) is the body's under `secret` and its time is
/// within the replay window.
pub fn verify(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), BadSignature> {
    let header = header.ok_or(BadSignature::Missing)?;
    let mut time = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => time = Some(t.parse::<i64>().map_err(|_| BadSignature::Malformed)?),
            Some(("v1", v)) => {
                signatures.push(hex::decode(v).map_err(|_| BadSignature::Malformed)?)
            }
            Some(_) => {}
            None => return Err(BadSignature::Malformed),
        }
    }
    let time = time.ok_or(BadSignature::Malformed)?;
    if signatures.is_empty() {
        return Err(BadSignature::Malformed);
    }
    if now_secs.abs_diff(time) > REPLAY_WINDOW_SECS as u64 {
        return Err(BadSignature::Stale);
    }
    let valid = signatures.iter().any(|signature| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(time.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    });
    match valid {
        true => Ok(()),
        false => Err(BadSignature::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_once_made_and_fails_on_any_change() {
        let header = sign("whsec_a", 1_000, b"{\"x\":1}");
        assert!(header.starts_with("t=1000,v1="));
        assert_eq!(
            verify("whsec_a", Some(&header), b"{\"x\":1}", 1_100),
            Ok(())
        );
        assert_eq!(
            verify("whsec_b", Some(&header), b"{\"x\":1}", 1_100),
            Err(BadSignature::Mismatch)
        );
        assert_eq!(
            verify("whsec_a", Some(&header), b"{\"x\":2}", 1_100),
            Err(BadSignature::Mismatch)
        );
        assert_eq!(
            verify(
                "whsec_a",
                Some(&header),
                b"{\"x\":1}",
                1_000 + REPLAY_WINDOW_SECS + 1
            ),
            Err(BadSignature::Stale)
        );
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(
            verify("whsec_a", Some(&moved), b"{\"x\":1}", 1_000),
            Err(BadSignature::Mismatch)
        );
        for bad in [
            "",
            "t=x,v1=00",
            "v1=00",
            "t=1000",
            "t=1000,v1=zz",
            "nonsense",
        ] {
            assert_eq!(
                verify("whsec_a", Some(bad), b"", 1_000),
                Err(BadSignature::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify("whsec_a", None, b"", 1_000),
            Err(BadSignature::Missing)
        );
    }

    #[test]
    fn the_mac_is_hmac_sha256_of_time_dot_body() {
        // Python: hmac.new(b"Jefe", b"0.what do ya want for nothing?", hashlib.sha256).hexdigest()
        assert_eq!(
            sign("Jefe", 0, b"what do ya want for nothing?"),
            "t=0,v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
    }
}
