//! keel's code interpreter: Python that a model wrote, run by the WASI build of CPython
//! (`python.wasm`, numpy and pandas compiled in) inside wasmtime, with a wall-clock deadline,
//! a memory cap, bounded output, no network and no host folder but the call's own.
//!
//! `Interpreter::load` compiles the module once (or loads the compiled copy cached beside the
//! wasm); `Interpreter::run` runs one program in a fresh instance over a working folder.

mod call;
mod compiled;
mod error;
mod interpreter;
mod ticker;

pub use call::{Limits, Outcome, Stop};
pub use error::SandboxError;
pub use interpreter::{Interpreter, STDLIB_ZIP_NAME};
