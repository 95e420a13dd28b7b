//! `keel serve`: the HTTP API over the same runtime as the other commands (store, data-dir
//! lock, agents from keel.toml, engine). Secure by default: keys are required, the first start
//! makes an admin key, a non-loopback address is refused without auth, and `/metrics` needs an
//! admin key unless the operator gives it a listener of its own (`--metrics-listen`). SIGTERM
//! or SIGINT stops accepting, lets steps in flight log their results, and exits 0.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use keel_server::ServerConfig;

use crate::config::Config;
use crate::runtime::Runtime;

#[derive(Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8787", env = "KEEL_LISTEN")]
    pub listen: SocketAddr,
    /// Accept requests without an API key (loopback addresses only; for development).
    #[arg(long)]
    pub no_auth: bool,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Requests served at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// Seconds a client may take to send a request's body.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Seconds a client may take to send a request's headers (and an idle connection stays open).
    #[arg(long, default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Also serve /metrics, alone and without a key, on this address (e.g. 127.0.0.1:9187 for a
    /// Prometheus beside keel; port 0 picks a free one). The API's /metrics still needs an
    /// admin key. Overrides `server.metrics_listen` in keel.toml.
    #[arg(long, env = "KEEL_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Label the gateway's counters in /metrics by tenant (off: summed over tenants, so a
    /// scrape names no tenant). Also `server.metrics_tenant_labels = true` in keel.toml.
    #[arg(long)]
    pub metrics_tenant_labels: bool,
    /// Log no line per request (by default each is logged at info: method, path, status,
    /// duration). `KEEL_LOG`, when set, decides instead.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(config: &Config, args: ServeArgs) -> anyhow::Result<()> {
    if args.no_auth && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to serve {} without auth: --no-auth is for loopback addresses only (e.g. 127.0.0.1); drop --no-auth to require API keys",
            args.listen
        );
    }
    let metrics_listen = args.metrics_listen.or(config.server.metrics_listen);
    let server_config = ServerConfig {
        auth: !args.no_auth,
        body_limit: args.body_limit,
        import_limit: config
            .server
            .import_limit_mb
            .unwrap_or(keel_server::DEFAULT_IMPORT_LIMIT_MB)
            .saturating_mul(1 << 20),
        max_concurrent_requests: args.max_concurrent_requests,
        request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
        header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        metrics_tenant_labels: args.metrics_tenant_labels || config.server.metrics_tenant_labels,
        ..ServerConfig::default()
    };
    let rt = Runtime::start(config).await?;
    let data_dir = config.data_dir();
    if let Some(key) = keel_server::bootstrap(&rt.engine, &data_dir).await? {
        eprintln!(
            "created the admin API key (shown once; also in {}):\n  {key}",
            keel_server::admin_key_path(&data_dir).display()
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another server using it? pick another with --listen",
                args.listen
            )
        })?;
    let metrics_listener = match metrics_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen for metrics on {addr}: is another server using it? pick another with --metrics-listen"
            )
        })?),
        None => None,
    };
    let addr = listener.local_addr()?;
    eprintln!("keel listening on http://{addr}");
    // Not `eprintln!`: once keel listens, a closed stderr must not stop it (a panic would).
    let _ = writeln!(
        std::io::stderr(),
        "keel store: {} (node {})",
        rt.store,
        rt.node_id
    );
    announce(&rt, addr);
    if let Some(metrics) = &metrics_listener {
        let addr = metrics.local_addr()?;
        eprintln!("keel metrics without a key on http://{addr}/metrics");
        if !addr.ip().is_loopback() {
            let tenants = if server_config.metrics_tenant_labels {
                ", tenants' ids and usage included (--metrics-tenant-labels)"
            } else {
                ""
            };
            eprintln!(
                "warning: anyone who can reach {addr} reads keel's metrics without a key{tenants}: keep that address on a private network or behind a firewall, or drop --metrics-listen and scrape /metrics with an admin key"
            );
        }
    }
    let listeners = keel_server::Listeners {
        api: listener,
        metrics: metrics_listener,
    };
    keel_server::serve(listeners, rt.engine.clone(), server_config, stop_signal()).await;
    rt.engine.shutdown().await;
    eprintln!("keel stopped");
    Ok(())
}

/// Says in the data directory's lock where this server listens, so `keel send` and `keel chat`
/// on the same directory talk to it rather than fail on the lock (any address: loopback).
fn announce(rt: &Runtime, mut addr: SocketAddr) {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    if let Err(e) = rt.lock.announce(&format!("http://{addr}")) {
        tracing::warn!(error = %e, "cannot write the server's address into keel.lock; `keel send` on this data directory will not find it");
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; stop keel with SIGINT");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
