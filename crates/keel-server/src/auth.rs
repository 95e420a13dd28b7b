//! API keys and the layer that checks them. A key is `<prefix>.<secret>`: the prefix is public
//! and names the key; only SHA-256 of the secret is stored, compared in constant time. A key's
//! record is read from the store at most once per `KEY_TTL` (reading it per request was a fifth
//! of a gateway call's CPU): a key revoked through this server fails on its very next request,
//! one revoked through another node within `KEY_TTL`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_core::TenantId;
use keel_engine::{Engine, EngineError, StoreReader, clock};
use keel_store::{ApiKeyRecord, KeyScope, StoreError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

const PREFIX_TAG: &str = "kk_";

/// Who is calling: the tenant every query is scoped to, what the key may do, and which key
/// (its public prefix; `None` when auth is off), for accounting.
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant: TenantId,
    pub scope: KeyScope,
    pub key_prefix: Option<String>,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.scope {
            KeyScope::Admin => Ok(()),
            KeyScope::Tenant => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_scope_required",
                "this endpoint needs an admin key; tenant keys cannot manage tenants or keys",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("the route was mounted without authentication"))
    }
}

/// A freshly made key: the text to hand out once, and the record to store.
pub struct NewKey {
    pub key: String,
    pub record: ApiKeyRecord,
}

/// Mints a key of `tenant` (prefix and secret fresh from `clock`), to store with
/// `Engine::add_api_key`.
pub fn generate_key(tenant: &TenantId, scope: KeyScope) -> NewKey {
    let prefix = format!("{PREFIX_TAG}{}", hex(&clock::new_secret::<8>()));
    let secret = hex(&clock::new_secret::<32>());
    NewKey {
        key: format!("{prefix}.{secret}"),
        record: ApiKeyRecord {
            prefix,
            tenant: tenant.clone(),
            scope,
            secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
            created_at: clock::now(),
            revoked_at: None,
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long a key's record read from the store is trusted.
pub const KEY_TTL: Duration = Duration::from_secs(1);

/// Key records read recently, by prefix (unknown prefixes are not kept: they cost a read).
#[derive(Default)]
pub struct KeyCache {
    records: Mutex<HashMap<String, (ApiKeyRecord, Instant)>>,
}

impl KeyCache {
    /// The key's record: the cached one while fresh, else the store's.
    async fn get(
        &self,
        store: &StoreReader,
        prefix: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        if let Some((record, read_at)) = self.records.lock().unwrap().get(prefix)
            && read_at.elapsed() < KEY_TTL
        {
            return Ok(Some(record.clone()));
        }
        let record = store.get_api_key(prefix).await?;
        let mut records = self.records.lock().unwrap();
        match &record {
            Some(r) => {
                if records.len() >= 100_000 {
                    records.retain(|_, (_, at)| at.elapsed() < KEY_TTL);
                }
                records.insert(prefix.to_string(), (r.clone(), Instant::now()));
            }
            None => {
                records.remove(prefix);
            }
        }
        Ok(record)
    }

    /// Drops a key's record (after this server revoked it).
    pub fn forget(&self, prefix: &str) {
        self.records.lock().unwrap().remove(prefix);
    }
}

/// Checks a presented key against the store (through `cache`): the caller, or why not.
pub async fn verify(
    store: &StoreReader,
    cache: &KeyCache,
    presented: &str,
) -> Result<Caller, ApiError> {
    let bad = || {
        ApiError::unauthenticated(
            "the API key is not valid: send `Authorization: Bearer <key>` with a key an admin made (or the one in <data_dir>/admin.key)",
        )
    };
    let (prefix, secret) = presented.split_once('.').ok_or_else(bad)?;
    if !prefix.starts_with(PREFIX_TAG) || prefix.len() > 64 {
        return Err(bad());
    }
    let record = cache.get(store, prefix).await?.ok_or_else(bad)?;
    let hash = Sha256::digest(secret.as_bytes());
    if !bool::from(hash.as_slice().ct_eq(&record.secret_hash)) {
        return Err(bad());
    }
    if record.revoked_at.is_some() {
        return Err(ApiError::unauthenticated(format!(
            "the API key {prefix} was revoked: ask an admin for a new one"
        )));
    }
    Ok(Caller {
        tenant: record.tenant,
        scope: record.scope,
        key_prefix: Some(record.prefix),
    })
}

/// The middleware: finds the caller from the `Authorization` header (or, with auth off,
/// treats every request as the default tenant's admin) and hands it to the handlers.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = if state.config.auth {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(key) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return ApiError::unauthenticated(
                "missing API key: send `Authorization: Bearer <key>` (the admin key is in <data_dir>/admin.key)",
            )
            .into_response();
        };
        match verify(&state.engine.store(), &state.keys, key.trim()).await {
            Ok(caller) => caller,
            Err(e) => return e.into_response(),
        }
    } else {
        Caller {
            tenant: TenantId::default_tenant(),
            scope: KeyScope::Admin,
            key_prefix: None,
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Where the first admin key is kept.
pub fn admin_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.key")
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "cannot write the admin key to {path}: {source}; check the data directory's permissions"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// On first start, creates the default tenant and an admin key, writes the key to
/// `<data_dir>/admin.key` (mode 0600) and returns it, to be shown once. `None` afterwards.
///
/// The key file is made durable (fsynced, renamed, its directory fsynced) before the tenant is
/// stored, and the tenant and key commit synchronously, so a power cut never leaves the tenant
/// without the file. A cut between the two commits leaves the tenant and the file without the
/// key's record: the next start stores the record from the file.
pub async fn bootstrap(engine: &Engine, data_dir: &Path) -> Result<Option<String>, BootstrapError> {
    let tenant = TenantId::default_tenant();
    let path = admin_key_path(data_dir);
    if engine.store().get_tenant(&tenant).await?.is_some() {
        finish_cut_bootstrap(engine, &path).await?;
        return Ok(None);
    }
    let new = generate_key(&tenant, KeyScope::Admin);
    keel_models::durable::write(&path, format!("{}\n", new.key).as_bytes(), true).map_err(
        |source| BootstrapError::Write {
            path: path.clone(),
            source,
        },
    )?;
    engine.create_default_tenant().await?;
    engine.add_api_key(&new.record).await?;
    tracing::info!(prefix = %new.record.prefix, path = %path.display(), "created the default tenant and its admin key");
    Ok(Some(new.key))
}

/// Stores the record of the key in `admin.key` when the store has none under its prefix: the
/// first start was cut off between storing the tenant and storing the key.
async fn finish_cut_bootstrap(engine: &Engine, path: &Path) -> Result<(), BootstrapError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let Some((prefix, secret)) = text.trim().split_once('.') else {
        return Ok(());
    };
    if !prefix.starts_with(PREFIX_TAG) || engine.store().get_api_key(prefix).await?.is_some() {
        return Ok(());
    }
    engine
        .add_api_key(&ApiKeyRecord {
            prefix: prefix.to_string(),
            tenant: TenantId::default_tenant(),
            scope: KeyScope::Admin,
            secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
            created_at: clock::now(),
            revoked_at: None,
        })
        .await?;
    tracing::warn!(%prefix, path = %path.display(), "the first start stopped before storing its admin key; stored it from the key file");
    Ok(())
}
