//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by the bytes of the `whsec_` secret.
//! While a replaced secret is still valid, each delivery carries a signature by both
//! (space-separated), so a receiver can switch keys without missing a message.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use scaivault_api::webhooks::{
    MAX_WEBHOOK_SECRET_BYTES, MIN_WEBHOOK_SECRET_BYTES, WEBHOOK_SECRET_PREFIX,
};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// The key bytes of a `whsec_` secret, or why it is not one. The message never quotes it.
pub fn key_of(secret: &SecretString) -> Result<Zeroizing<Vec<u8>>, String> {
    let text = secret.expose_secret();
    let Some(encoded) = text.strip_prefix(WEBHOOK_SECRET_PREFIX) else {
        return Err(format!(
            "secret must start with {WEBHOOK_SECRET_PREFIX} (scaivault webhooks new-secret makes one)"
        ));
    };
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map(Zeroizing::new)
        .map_err(|_| format!("secret after {WEBHOOK_SECRET_PREFIX} must be base64"))?;
    if !(MIN_WEBHOOK_SECRET_BYTES..=MAX_WEBHOOK_SECRET_BYTES).contains(&bytes.len()) {
        return Err(format!(
            "secret must encode {MIN_WEBHOOK_SECRET_BYTES} to {MAX_WEBHOOK_SECRET_BYTES} random bytes"
        ));
    }
    Ok(bytes)
}

/// The `webhook-signature` header value: one `v1,` signature per key, in order.
pub fn signature_header(keys: &[&[u8]], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut message = Vec::with_capacity(id.len() + body.len() + 24);
    message.extend_from_slice(id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    keys.iter()
        .map(|key| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &message);
            format!("v1,{}", STANDARD.encode(tag.as_ref()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's example: secret
    /// `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
    /// timestamp 1614265330, body `{"test": 2432232314}`.
    #[test]
    fn signs_like_the_specification() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let key = key_of(&secret).unwrap_or_default();
        assert_eq!(key.len(), 24);
        let header = signature_header(
            &[&key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_keys_sign_twice_and_bad_secrets_are_refused_without_quoting_them() {
        let header = signature_header(
            &[b"0123456789abcdef01234567", b"abcdefabcdefabcdefabcdef"],
            "msg_1",
            1,
            b"{}",
        );
        assert_eq!(header.split(' ').count(), 2);
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            let error = key_of(&SecretString::from(bad.to_owned()))
                .err()
                .unwrap_or_default();
            assert!(!error.is_empty(), "{bad} was taken");
            assert!(!error.contains(bad.trim_start_matches("whsec_")), "{error}");
        }
    }
}
