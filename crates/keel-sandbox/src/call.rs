//! One program run: a fresh store and instance over the call's working folder (granted at `/`,
//! read-write, the only host folder besides the read-only standard library), with the
//! deadline as an epoch count, the memory cap as a store limit, stdout and stderr kept up to a
//! bound, and no sockets. Whatever the program does, the caller gets an `Outcome`.

use std::path::Path;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Linker, Store, StoreLimits, StoreLimitsBuilder, Trap, Val};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::error::SandboxError;
use crate::interpreter::Interpreter;
use crate::ticker::TICK;

/// The interpreter's `argv[0]`, where CPython derives its prefix (`/usr/local`) from.
const ARGV0: &str = "/usr/local/bin/python.wasm";

/// What a run may use.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall-clock time for the whole run, start-up included.
    pub deadline: Duration,
    /// The most linear memory the program may hold.
    pub memory_bytes: usize,
    /// The most bytes kept of stdout and of stderr each.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(30),
            memory_bytes: 512 << 20,
            output_bytes: 64 << 10,
        }
    }
}

/// Why a program ended before it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// It ran past `Limits::deadline`.
    Deadline,
    /// The runtime stopped it (a trap: stack overflow, unreachable, memory growth refused…).
    Trap(String),
}

/// How one run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The program's exit status; `None` when it was stopped.
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Whether stdout or stderr reached `Limits::output_bytes` (what came after was dropped).
    pub truncated: bool,
    pub stopped: Option<Stop>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.stopped.is_none() && self.exit_code == Some(0)
    }
}

/// What a store holds for one call.
pub(crate) struct CallState {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// WASI preview 1, and the interpreter's `host::call` import answered "no host" (-1): keel
/// offers a program no host functions.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |s: &mut CallState| &mut s.wasi)?;
    linker.func_wrap("host", "call", |_: i32, _: i32, _: i32, _: i32| -> i32 {
        -1
    })?;
    Ok(linker)
}

impl Interpreter {
    /// Runs `code` (as `python -c code`) with `workdir` as the program's `/`.
    pub fn run(
        &self,
        code: &str,
        workdir: &Path,
        limits: &Limits,
    ) -> Result<Outcome, SandboxError> {
        let started = Instant::now();
        let stdout = MemoryOutputPipe::new(limits.output_bytes);
        let stderr = MemoryOutputPipe::new(limits.output_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.args(&[ARGV0, "-c", code])
            .envs(&[
                ("HOME", "/tmp"),
                ("TMPDIR", "/tmp"),
                ("PYTHONDONTWRITEBYTECODE", "1"),
                ("PYTHONTZPATH", ""),
            ])
            .stdin(MemoryInputPipe::new(Vec::<u8>::new()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let start = |e: wasmtime::Error| SandboxError::Start(format!("{e:#}"));
        // The standard library first: the guest's libc picks a path's preopen by the longest
        // prefix, so /usr/local/lib/… reads the zip and everything else the working folder.
        wasi.preopened_dir(&self.lib_dir, "/usr/local/lib", FsPerms::ReadOnly)
            .map_err(start)?;
        wasi.preopened_dir(workdir, "/", FsPerms::ReadWrite)
            .map_err(start)?;
        let state = CallState {
            wasi: wasi.build_p1(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(1)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = limits
            .deadline
            .as_millis()
            .div_ceil(TICK.as_millis())
            .max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let ended = {
            let _ticking = self.ticker.hold();
            self.enter(&mut store)
        };
        let (exit_code, stopped) = match ended {
            Ok(code) => (Some(code), None),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => (Some(exit.0), None),
                None => (None, Some(stop_of(&e))),
            },
        };
        drop(store);
        let (stdout, stderr) = (stdout.contents().to_vec(), stderr.contents().to_vec());
        let truncated = stdout.len() >= limits.output_bytes || stderr.len() >= limits.output_bytes;
        Ok(Outcome {
            exit_code,
            stdout,
            stderr,
            truncated,
            stopped,
            elapsed: started.elapsed(),
        })
    }

    /// Instantiates the reactor and calls `_initialize`, then `run` (its status).
    fn enter(&self, store: &mut Store<CallState>) -> wasmtime::Result<i32> {
        let instance = self.linker.instantiate(&mut *store, &self.module)?;
        if let Some(init) = instance.get_func(&mut *store, "_initialize") {
            init.call(&mut *store, &[], &mut [])?;
        }
        let run = instance
            .get_func(&mut *store, "run")
            .or_else(|| instance.get_func(&mut *store, "_start"))
            .ok_or_else(|| wasmtime::Error::msg("the module exports neither run nor _start"))?;
        let mut results = vec![Val::I32(0); run.ty(&*store).results().len()];
        run.call(&mut *store, &[], &mut results)?;
        Ok(results.first().and_then(Val::i32).unwrap_or(0))
    }
}

fn stop_of(e: &wasmtime::Error) -> Stop {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Stop::Deadline,
        Some(trap) => Stop::Trap(trap.to_string()),
        None => Stop::Trap(e.to_string().lines().next().unwrap_or_default().to_string()),
    }
}
