//! The one model cache every data directory shares (`KEEL_MODEL_CACHE`, else
//! `$XDG_CACHE_HOME/keel/models`, else `~/.cache/keel/models`), so a second data directory
//! never downloads the same 98 MB again: where it is, what it holds, and the lock and scratch
//! folders a fetch uses inside it.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::LocalError;
use keel_models::durable;

use super::{InstalledModel, KNOWN_MODELS};

/// The shared model cache, as the environment names it.
pub fn cache_dir() -> Result<PathBuf, LocalError> {
    cache_dir_from(|name| std::env::var_os(name))
}

/// `cache_dir` with the environment given as a lookup. Empty or relative `XDG_CACHE_HOME`
/// and `HOME` are ignored, as the XDG base directory rules say; `KEEL_MODEL_CACHE` is taken
/// as given.
pub fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, LocalError> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("KEEL_MODEL_CACHE") {
        return Ok(dir);
    }
    let absolute = |name: &str| set(name).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute("XDG_CACHE_HOME") {
        return Ok(xdg.join("keel").join("models"));
    }
    if let Some(home) = absolute("HOME") {
        return Ok(home.join(".cache").join("keel").join("models"));
    }
    Err(LocalError::NoCache)
}

/// The model files stored in `cache` (GGUF chat models, safetensors embedding models, the
/// sandbox's wasm interpreter), by name.
pub fn list(cache: &Path) -> Result<Vec<InstalledModel>, LocalError> {
    let entries = match fs::read_dir(cache) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LocalError::Io {
                path: cache.to_path_buf(),
                source,
            });
        }
    };
    let mut models: Vec<InstalledModel> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let main = [".gguf", ".safetensors", ".wasm"];
            main.iter().any(|ext| name.ends_with(ext)) && !name.starts_with('.')
        })
        .filter_map(|e| {
            let file_name = e.file_name().to_string_lossy().into_owned();
            let known = KNOWN_MODELS
                .iter()
                .find(|m| m.file_name == file_name)
                .copied();
            Some(InstalledModel {
                name: known.map_or(file_name, |k| k.name.to_string()),
                path: e.path(),
                bytes: e.metadata().ok()?.len(),
                known,
            })
        })
        .collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Removes a stored model (and its companions) by name or file name; `false` if it was not
/// there.
pub fn remove(cache: &Path, name: &str) -> Result<bool, LocalError> {
    let Some(model) = list(cache)?
        .into_iter()
        .find(|m| m.name == name || m.path.file_name().is_some_and(|f| f == name))
    else {
        return Ok(false);
    };
    // The main file first: without it the model counts as absent, whatever companions remain.
    let companions = model.known.map_or(&[][..], |k| k.companions);
    let paths = std::iter::once(model.path.clone())
        .chain(companions.iter().map(|c| cache.join(c.file_name)));
    for path in paths {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LocalError::Store { path, source }),
        }
    }
    Ok(true)
}

/// Creates the cache folder (durably) if it is not there yet.
pub(super) fn create(cache: &Path) -> Result<(), LocalError> {
    durable::create_dir_all(cache).map_err(|source| LocalError::Store {
        path: cache.to_path_buf(),
        source,
    })
}

/// An exclusive lock on `<cache>/.pull.lock`, held while a model is fetched: processes
/// sharing the cache download a model once.
pub(super) struct PullLock {
    _file: File,
}

impl PullLock {
    pub(super) fn acquire(cache: &Path) -> Result<Self, LocalError> {
        create(cache)?;
        let path = cache.join(".pull.lock");
        let store_err = |source| LocalError::Store {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(store_err)?;
        file.lock().map_err(store_err)?;
        Ok(PullLock { _file: file })
    }
}

/// A download folder inside the cache, removed on drop.
pub(super) struct ScratchDir(pub(super) PathBuf);

impl ScratchDir {
    pub(super) fn create(parent: &Path) -> Result<Self, LocalError> {
        let path = parent.join(format!(".download-{}", unique_suffix()));
        fs::create_dir_all(&path).map_err(|source| LocalError::Store {
            path: path.clone(),
            source,
        })?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Distinct for every call in this process and across processes.
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<PathBuf, LocalError> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        cache_dir_from(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_cache_is_keel_model_cache_then_xdg_then_home() {
        let all = [
            ("KEEL_MODEL_CACHE", "/m"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(from(&all).unwrap(), Path::new("/m"));
        assert_eq!(from(&all[1..]).unwrap(), Path::new("/x/keel/models"));
        assert_eq!(from(&all[2..]).unwrap(), Path::new("/h/.cache/keel/models"));
    }

    #[test]
    fn empty_or_relative_xdg_and_home_are_ignored() {
        let vars = [
            ("KEEL_MODEL_CACHE", ""),
            ("XDG_CACHE_HOME", "relative"),
            ("HOME", "/h"),
        ];
        assert_eq!(from(&vars).unwrap(), Path::new("/h/.cache/keel/models"));
        let err = from(&[("HOME", "")]).unwrap_err();
        assert!(err.to_string().contains("KEEL_MODEL_CACHE"), "{err}");
    }
}
