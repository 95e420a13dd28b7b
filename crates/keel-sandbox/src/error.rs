//! What can keep the interpreter from loading or a program from starting (a program's own
//! failure, a deadline or a memory cap is an `Outcome`, not an error).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable interpreter module: {reason}")]
    BadModule { path: PathBuf, reason: String },
    #[error("the sandbox could not start the program: {0}")]
    Start(String),
}
