//! TLS with rustls (ring provider; no OpenSSL): the client port's server side (optionally
//! mutual: clients show a certificate of a configured CA, and its subject names them), and
//! the client side of a PBX link. Certificates and keys are PEM files; every error names the
//! configuration key and what to do.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// The ring provider: it builds with the C compiler alone (aws-lc-rs, rustls's default,
/// needs a much heavier C build). rustls marks it deprecated because it offers no
/// post-quantum key exchange; classic ECDHE (X25519, P-256) with TLS 1.3 and 1.2 is what
/// PBXs and CRM clients speak today. Moving to aws-lc-rs is this one function.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (`key` names the configuration key in errors).
pub fn certificates(path: &str, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key}: cannot read {path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key}: {path} is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{key}: {path} holds no certificate (a PEM file with -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}

fn private_key(path: &str, key: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!("{key}: cannot read a private key (PKCS#8, PKCS#1 or SEC1 PEM) from {path}: {e}")
    })
}

fn roots(path: &str, key: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certificates(path, key)? {
        roots
            .add(c)
            .map_err(|e| format!("{key}: a certificate in {path} is not a usable CA: {e}"))?;
    }
    Ok(roots)
}

/// The client port's TLS: `cert` and `key` (the `[api] tls_cert` / `tls_key` files), and
/// with `client_ca` (`tls_client_ca`) mutual TLS: a client must show a certificate that CA
/// issued.
pub fn server(cert: &str, key: &str, client_ca: Option<&str>) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates(cert, "api.tls_cert")?;
    let pk = private_key(key, "api.tls_key")?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "api.tls_client_ca")?),
                provider(),
            )
            .build()
            .map_err(|e| format!("api.tls_client_ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let cfg = builder.with_single_cert(chain, pk).map_err(|e| {
        format!("api.tls_cert / api.tls_key: the key does not go with the certificate, or is not usable: {e}")
    })?;
    Ok(Arc::new(cfg))
}

/// A PBX link's TLS client: the switch's certificate must chain to `ca` (the link's
/// `tls_ca`, a PEM file). `key` names the link's configuration key prefix in errors.
pub fn client(ca: &str, key: &str) -> Result<Arc<ClientConfig>, String> {
    let roots = roots(ca, &format!("{key}.tls_ca"))?;
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The name the switch's certificate must carry: `name` when configured, else the host
/// part of `address` (`host:port`).
pub fn server_name(address: &str, name: Option<&str>) -> Result<ServerName<'static>, String> {
    let host = match name {
        Some(n) => n.to_string(),
        None => {
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        }
    };
    ServerName::try_from(host.clone())
        .map_err(|e| format!("{host:?} is not a host name or address for TLS: {e}"))
}

/// The subject of a client's certificate as a user name: its first common name (CN), or
/// the whole subject (RFC 4514) when it has none.
pub fn subject(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = c.subject();
    if let Some(cn) = subject.iter_common_name().next() {
        if let Ok(s) = cn.as_str() {
            return Some(s.to_string());
        }
    }
    Some(subject.to_string())
}
