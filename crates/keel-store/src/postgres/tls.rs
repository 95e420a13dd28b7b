//! TLS to the database, as managed PostgreSQL offerings require: `sslmode=require` in the URL
//! asks for it, and keel then verifies the server's certificate and name (what libpq calls
//! `verify-full`) against the Mozilla roots and, when given, a CA file of the provider's
//! (`PgOptions::ca_file`, PEM). Without `sslmode=require` keel connects in plain text: it makes
//! no unverified TLS connection, which would encrypt without telling who answers.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::Config;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// The TLS connector `config` asks for: `None` for plain text.
pub(crate) fn connector(
    config: &Config,
    ca_file: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, StoreError> {
    if config.get_ssl_mode() != SslMode::Require {
        return match ca_file {
            Some(file) => Err(StoreError::Invalid(format!(
                "a CA file ({}) is given but the PostgreSQL URL does not ask for TLS: add \
                 sslmode=require to it",
                file.display()
            ))),
            None => Ok(None),
        };
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = ca_file {
        let unreadable = |e: &dyn std::fmt::Display| {
            StoreError::Invalid(format!(
                "cannot read the PostgreSQL CA file {}: {e}; give a PEM file of the server's \
                 CA certificates",
                file.display()
            ))
        };
        let certificates = CertificateDer::pem_file_iter(file)
            .map_err(|e| unreadable(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(&e))?;
        if certificates.is_empty() {
            return Err(unreadable(&"it holds no certificate"));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| unreadable(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Invalid(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(tls)))
}
