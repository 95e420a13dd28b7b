//! Every file keel creates is durable: the first `keel serve` runs under strace, and its
//! system calls must show the data directory's entry fsynced into its parent after it is made,
//! and `admin.key` renamed into place and the data directory fsynced before the default tenant
//! is committed (else a power cut could keep the tenant and lose the key file, and no later
//! start would write another). Needs strace (and ptrace); skips loudly without them.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::KeelHome;

const SCRIPTED: &str = "[providers.scripted]\nkind = \"scripted\"\n\n[[agents]]\nname = \"default\"\nmodel = \"scripted/echo\"\n";

fn strace_works() -> bool {
    Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The pids of `pid`'s child processes.
fn children(pid: u32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Runs the first `keel serve` of `home` under strace until it listens, stops it, and returns
/// the traced calls, one per line (`-y`: file descriptors shown with their paths).
fn trace_first_start(home: &KeelHome, data: &Path) -> Vec<String> {
    let trace = home.path().join("strace.txt");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-y", "-s", "256", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=mkdir,mkdirat,rename,renameat,renameat2,fsync,fdatasync",
        ])
        .arg(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .current_dir(home.path())
        .env_remove("KEEL_DATA_DIR")
        .env_remove("KEEL_FAULT_PAUSE")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strace");
    let stderr = strace.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("keel listening on") {
                let _ = tx.send(());
            }
        }
    });
    let listening = rx.recv_timeout(Duration::from_secs(120)).is_ok();
    // SIGTERM keel itself (strace would only detach), then let strace finish the file.
    for pid in children(strace.id()) {
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while strace.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            support::sigkill(&mut strace);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(listening, "keel serve under strace did not start");
    std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The index of the first line from `from` on that matches.
fn find(lines: &[String], from: usize, what: impl Fn(&str) -> bool) -> Option<usize> {
    lines[from..].iter().position(|l| what(l)).map(|i| from + i)
}

/// `fsync(7</the/dir>) = 0` (or fdatasync) of exactly `dir`.
fn is_sync_of(line: &str, dir: &Path) -> bool {
    (line.contains(" fsync(") || line.contains(" fdatasync("))
        && line.contains(&format!("<{}>)", dir.display()))
        && line.trim_end().ends_with("= 0")
}

#[test]
fn the_first_start_fsyncs_the_data_directory_after_creating_it_and_admin_key() {
    if !strace_works() {
        eprintln!(
            "SKIPPED: strace is missing or may not trace here (install strace, allow ptrace); \
             the data directory's and admin.key's fsyncs went unchecked"
        );
        return;
    }
    let home = KeelHome::new(SCRIPTED);
    // Resolve symlinks in the temp path as strace's -y does.
    let root = std::fs::canonicalize(home.path()).unwrap();
    let data = root.join("keel-data");
    let lines = trace_first_start(&home, &data);
    let shown = || lines.join("\n");

    let made = find(&lines, 0, |l| {
        l.contains("mkdir") && l.contains(&format!("\"{}\"", data.display())) && l.ends_with("= 0")
    })
    .unwrap_or_else(|| panic!("no mkdir of the data directory in:\n{}", shown()));
    assert!(
        find(&lines, made, |l| is_sync_of(l, &root)).is_some(),
        "the data directory's parent was never fsynced after the data directory was made:\n{}",
        shown()
    );

    let key = data.join("admin.key");
    let renamed = find(&lines, 0, |l| {
        l.contains("rename") && l.contains(&format!("\"{}\"", key.display())) && l.ends_with("= 0")
    })
    .unwrap_or_else(|| panic!("admin.key was not renamed into place:\n{}", shown()));
    let dir_synced = find(&lines, renamed, |l| is_sync_of(l, &data)).unwrap_or_else(|| {
        panic!(
            "the data directory was not fsynced after admin.key:\n{}",
            shown()
        )
    });
    let wal = data.join("keel.db-wal");
    let tenant_committed = find(&lines, renamed, |l| {
        (l.contains(" fsync(") || l.contains(" fdatasync("))
            && l.contains(&format!("<{}>", wal.display()))
    })
    .unwrap_or_else(|| panic!("no commit after admin.key was written:\n{}", shown()));
    assert!(
        dir_synced < tenant_committed,
        "the default tenant was committed before admin.key's directory entry was durable:\n{}",
        shown()
    );
    assert_eq!(
        std::fs::read_to_string(&key).unwrap().trim().len(),
        "kk_".len() + 16 + 1 + 64,
        "admin.key holds the key"
    );
}
