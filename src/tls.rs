//! One TLS crypto provider for the whole process. Two rustls back-ends end up linked (ring,
//! which reqwest, async-nats and our PostgreSQL connector use, and aws-lc-rs, which tiberius
//! requires); rustls then refuses to guess, so every TLS user either names its provider or
//! relies on the process default installed here.

/// Installs ring as the process-wide rustls provider, once; later calls do nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
