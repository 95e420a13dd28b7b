//! `keel config check`: reads the configuration as keel does at start — the file, then the
//! environment — without starting anything, and prints what keel would run with (secrets
//! redacted), or every problem found.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::Value;

use crate::config::Config;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration without starting keel and print it as keel would use it,
    /// secrets redacted; exits 1 with every problem found.
    Check {
        /// The file to check (default: --config, KEEL_CONFIG, else ./keel.toml when present).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}

/// Whether the configuration is valid. `config_file` and `data_dir` are the global flags.
pub fn run(
    config_file: Option<&Path>,
    data_dir: Option<PathBuf>,
    command: ConfigCommand,
) -> anyhow::Result<bool> {
    let ConfigCommand::Check { file, json } = command;
    let file = file.as_deref().or(config_file);
    let mut config = match Config::load(file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(false);
        }
    };
    if let Some(dir) = data_dir {
        config.data_dir = Some(dir);
    }
    config.data_dir = Some(config.data_dir());
    let mut value = serde_json::to_value(&config)?;
    redact_secrets(&mut value);
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        drop_nulls(&mut value);
        let source = match file {
            Some(path) => path.display().to_string(),
            None if Path::new("keel.toml").exists() => "keel.toml".into(),
            None => "no keel.toml: defaults".into(),
        };
        println!(
            "# The configuration keel runs with ({source}, then the environment); secrets redacted."
        );
        print!("{}", toml::to_string(&value)?);
    }
    Ok(true)
}

/// Whether a key names a secret: `auth`, or one ending in key, secret, token or password
/// (`api_key`, `secret_access_key`, `entra_token`; not `api_key_env`, which names a variable).
fn is_secret(key: &str) -> bool {
    let last = key.rsplit('_').next().unwrap_or(key).to_ascii_lowercase();
    key == "auth" || matches!(last.as_str(), "key" | "secret" | "token" | "password")
}

/// Replaces every set value under a secret's key by `"<redacted>"`.
fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret(key) {
                    redact_all(v);
                } else if let Value::String(url) = v
                    && let Some(redacted) = redact_url_password(url)
                {
                    *url = redacted;
                } else {
                    redact_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

/// A URL with its password (`scheme://user:password@host/…`, e.g. `[store] url`) redacted;
/// `None` for any other string.
pub(crate) fn redact_url_password(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (userinfo, host) = rest[..authority_end].rsplit_once('@')?;
    let (user, _) = userinfo.split_once(':')?;
    let path = &rest[authority_end..];
    Some(format!("{scheme}://{user}:<redacted>@{host}{path}"))
}

fn redact_all(value: &mut Value) {
    match value {
        Value::Null => {}
        Value::Object(map) => map.values_mut().for_each(redact_all),
        Value::Array(items) => items.iter_mut().for_each(redact_all),
        other => *other = Value::String("<redacted>".into()),
    }
}

/// TOML has no null: an unset option is left out.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_urls_password_is_redacted_and_the_rest_kept() {
        assert_eq!(
            super::redact_url_password("postgres://keel:s3cr@t@db.internal:5432/keel?x=1")
                .as_deref(),
            Some("postgres://keel:<redacted>@db.internal:5432/keel?x=1")
        );
        assert_eq!(super::redact_url_password("postgres://keel@db/keel"), None);
        assert_eq!(super::redact_url_password("http://127.0.0.1:8000/v1"), None);
    }

    use super::*;

    #[test]
    fn secrets_are_named_like_secrets() {
        for secret in [
            "api_key",
            "auth",
            "secret_access_key",
            "entra_token",
            "password",
        ] {
            assert!(is_secret(secret), "{secret}");
        }
        for plain in [
            "api_key_env",
            "max_output_tokens",
            "token_latency_ms",
            "access_key_id",
        ] {
            assert!(!is_secret(plain), "{plain}");
        }
        let mut value = serde_json::json!({
            "providers": {"a": {"auth": {"api_key": "s1"}, "base_url": "u", "api_key": null}},
            "agents": [{"limits": {"max_output_tokens": 5}}],
        });
        redact_secrets(&mut value);
        assert_eq!(value["providers"]["a"]["auth"]["api_key"], "<redacted>");
        assert_eq!(value["providers"]["a"]["api_key"], Value::Null);
        assert_eq!(value["providers"]["a"]["base_url"], "u");
        assert_eq!(value["agents"][0]["limits"]["max_output_tokens"], 5);
    }
}
