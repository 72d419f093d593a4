//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` header value of one request. `body` must be exactly the bytes
/// sent; `key` is the decoded part of the `whsec_` secret.
pub(super) fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::webhook_key;

    /// The reference vector of the Standard Webhooks libraries.
    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_part_is_signed() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = signature(&key, "a", 1, b"{}");
        assert_ne!(base, signature(&key, "b", 1, b"{}"));
        assert_ne!(base, signature(&key, "a", 2, b"{}"));
        assert_ne!(base, signature(&key, "a", 1, b"{ }"));
        assert_ne!(base, signature(b"another key of 24 bytes!", "a", 1, b"{}"));
    }
}
