//! TLS to PostgreSQL, as managed databases require: a store whose URL says `sslmode=require`
//! connects over TLS and verifies the server's certificate and name — against a CA file when
//! one is given — or refuses to go on. The test puts a TLS front of its own (certificates made
//! with `openssl` for 127.0.0.1, signed by a CA of the test's) before the real test server,
//! the way a managed offering's proxy ends TLS; skipped loudly without a server (`pg_server`).

mod pg_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keel_core::{AgentId, SessionId, TenantId, Timestamp};
use keel_store::{PgOptions, PgStore, SessionRecord, Store, StoreError};
use pg_server::Schema;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// PostgreSQL's SSLRequest: length 8, then the code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// A CA and a certificate for 127.0.0.1 signed by it, made with `openssl` in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the TLS test needs the openssl command");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=keel test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// A TLS front for the test server on a port of its own: it answers PostgreSQL's SSLRequest,
/// ends TLS with `cert`, and relays to the server in plain text. Counts the TLS sessions.
async fn tls_front(cert: &Path, key: &Path, server: (String, u16)) -> (u16, Arc<AtomicUsize>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sessions = Arc::new(AtomicUsize::new(0));
    let counted = sessions.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counted, server) = (acceptor.clone(), counted.clone(), server.clone());
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                if client.read_exact(&mut request).await.is_err() || request != SSL_REQUEST {
                    return; // A plain client: this front speaks only TLS.
                }
                client.write_all(b"S").await.unwrap();
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return; // The client refused the certificate.
                };
                counted.fetch_add(1, Ordering::Relaxed);
                let mut upstream = TcpStream::connect(server).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, sessions)
}

/// The test server's URL through the front at `port`, asking for TLS.
fn url_through(port: u16) -> String {
    let config = tokio_postgres::Config::from_str(&pg_server::url()).unwrap();
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let database = config.get_dbname().unwrap_or("test");
    format!("postgres://{user}{password}@127.0.0.1:{port}/{database}?sslmode=require")
}

fn server_address() -> (String, u16) {
    let config = tokio_postgres::Config::from_str(&pg_server::url()).unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".into(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

fn options(url: String, schema: &Schema, ca_file: Option<PathBuf>) -> PgOptions {
    PgOptions {
        schema: Some(schema.name.clone()),
        pool_size: 2,
        ca_file,
        connect_timeout: std::time::Duration::from_secs(5),
        ..PgOptions::new(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_verifies_the_server_against_the_ca_file_and_serves_the_store() {
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let (port, sessions) = tls_front(&cert, &key, server_address()).await;

    let store = PgStore::open(options(url_through(port), &schema, Some(ca)))
        .await
        .expect("a store over verified TLS");
    let tenant = TenantId::default_tenant();
    let session = SessionRecord {
        id: SessionId::generate(1, 1),
        tenant: tenant.clone(),
        agent_id: AgentId::generate(1, 2),
        agent_name: "helper".into(),
        agent_version: 1,
        created_at: Timestamp::from_millis(1_000),
        metadata: serde_json::Map::new(),
        last_seq: 0,
    };
    store.create_session(&session, Vec::new()).await.unwrap();
    let read = store.get_session(&tenant, &session.id).await.unwrap();
    assert_eq!(read.map(|s| s.id), Some(session.id));
    assert!(store.describe().contains(&format!("127.0.0.1:{port}")));
    // The pool and the listener of other nodes' changes both came through TLS.
    assert!(sessions.load(Ordering::Relaxed) >= 2, "{sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_no_trusted_ca_signed_is_refused() {
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificates(dir.path());
    let (port, sessions) = tls_front(&cert, &key, server_address()).await;
    match PgStore::open(options(url_through(port), &schema, None)).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("certificate"), "{message}");
        }
        other => panic!("expected the certificate refused, got {other:?}"),
    }
    assert_eq!(
        sessions.load(Ordering::Relaxed),
        0,
        "no session was established"
    );
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_used_is_named_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let url = "postgres://keel@127.0.0.1:1/keel?sslmode=require";
    for file in [&missing, &empty] {
        let options = PgOptions {
            ca_file: Some(file.clone()),
            ..PgOptions::new(url)
        };
        match PgStore::open(options).await {
            Err(StoreError::Invalid(message)) => {
                assert!(message.contains(&file.display().to_string()), "{message}")
            }
            other => panic!("expected Invalid for {}, got {other:?}", file.display()),
        }
    }
    // A CA file for a URL that does not ask for TLS: said, not ignored.
    let plain = PgOptions {
        ca_file: Some(missing.clone()),
        ..PgOptions::new("postgres://keel@127.0.0.1:1/keel")
    };
    match PgStore::open(plain).await {
        Err(StoreError::Invalid(message)) => {
            assert!(message.contains("sslmode=require"), "{message}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}
