//! Bad input to the real binary: a corrupt or truncated database, an event written by a
//! newer keel, a data directory keel may not write, a full disk. Each gives a clear message
//! and a non-zero exit, never a panic, and never damages what was already stored.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;

use support::KeelHome;

const SCRIPTED: &str = "[providers.scripted]\nkind = \"scripted\"\n\n[[agents]]\nname = \"default\"\nmodel = \"scripted/echo\"\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean_failure(out: &Output, expect: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(!err.contains("panicked"), "keel panicked: {err}");
    assert!(
        err.contains(expect),
        "error should mention {expect:?}: {err}"
    );
}

fn integrity_ok(db: &Path) -> bool {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .unwrap()
        == "ok"
}

fn home_with_one_turn() -> (KeelHome, String) {
    let home = KeelHome::new(SCRIPTED);
    let out = home.run(&["send", "remember this"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let session = home.only_session();
    (home, session)
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let home = KeelHome::new(SCRIPTED);
    std::fs::create_dir_all(home.data_dir()).unwrap();
    let db = home.data_dir().join("keel.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    for args in [&["sessions", "list"][..], &["send", "hi"][..]] {
        assert_clean_failure(&home.run(args), "keel.db");
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "keel must not touch a file it cannot read"
    );
}

#[test]
fn a_truncated_database_is_refused_with_a_clear_message() {
    let (home, _) = home_with_one_turn();
    let db = home.data_dir().join("keel.db");
    let len = std::fs::metadata(&db).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let before = std::fs::read(&db).unwrap();
    let out = home.run(&["sessions", "list"]);
    assert_clean_failure(&out, "keel.db");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "keel must not write to a damaged file"
    );
}

#[test]
fn an_event_from_a_newer_keel_is_reported_and_nothing_is_damaged() {
    let (home, session) = home_with_one_turn();
    let db = home.data_dir().join("keel.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let last: i64 = conn
            .query_row(
                "SELECT last_seq FROM sessions WHERE id = ?1",
                [&session],
                |r| r.get(0),
            )
            .unwrap();
        conn.execute(
            "INSERT INTO events (session, seq, type, at, body) VALUES (?1, ?2, 'memory_recalled', 0, ?3)",
            rusqlite::params![session, last + 1, r#"{"type":"memory_recalled","note":"from keel 9"}"#],
        )
        .unwrap();
        conn.execute(
            "UPDATE sessions SET last_seq = ?2 WHERE id = ?1",
            rusqlite::params![session, last + 1],
        )
        .unwrap();
    }
    assert_clean_failure(&home.run(&["sessions", "events", &session]), "newer keel");
    assert_clean_failure(&home.run(&["sessions", "show", &session]), "newer keel");
    let out = home.run(&["send", "--session", &session, "and now?"]);
    assert_clean_failure(&out, "newer keel");
    assert!(integrity_ok(&db));
    // The events before it are intact and readable.
    let out = home.run(&["sessions", "events", &session, "--limit", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("remember this"));
}

#[test]
fn a_data_dir_keel_may_not_write_gives_a_clear_error() {
    let home = KeelHome::new(SCRIPTED);
    let data = home.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    set_mode(home.path(), 0o755);
    set_mode(&data, 0o555);
    let mut cmd = home.command(&["send", "hi"]);
    if unsafe { libc::geteuid() } == 0 {
        // root ignores permissions: run keel as an unprivileged user, as a real deployment
        // would — from a copy that user can reach wherever the checkout lives.
        let bin = home.path().join("keel");
        std::fs::copy(env!("CARGO_BIN_EXE_keel"), &bin).unwrap();
        set_mode(&bin, 0o755);
        let mut as_nobody = std::process::Command::new(&bin);
        as_nobody
            .args(["send", "hi"])
            .current_dir(home.path())
            .env_remove("KEEL_DATA_DIR");
        as_nobody.uid(65534).gid(65534);
        cmd = as_nobody;
    }
    let out = support::wait_with_timeout(
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        std::time::Duration::from_secs(60),
    );
    assert_clean_failure(&out, "keel-data");
    set_mode(&data, 0o755);
}

#[test]
fn a_full_disk_stops_the_run_cleanly_and_keeps_what_was_stored() {
    let home = KeelHome::new(SCRIPTED);
    let data = home.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&data)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "this test needs to mount a tiny tmpfs (run as root, as CI does)"
    );
    let _unmount = Unmount(data.clone());
    let out = home.run(&["send", "first message"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let session = home.only_session();
    // Fill the disk but for a little room, then send messages until they no longer fit.
    let filler = data.join("filler");
    let room = 700 * 1024;
    std::fs::write(
        &filler,
        vec![1u8; free_bytes(&data).saturating_sub(room) as usize],
    )
    .unwrap();
    let big = "x".repeat(100 * 1024);
    let mut failure = None;
    for _ in 0..20 {
        let out = home.run(&["send", "--session", &session, &big]);
        if !out.status.success() {
            failure = Some(out);
            break;
        }
    }
    let out = failure.expect("a full disk must make keel fail");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("full"),
        "the error should say the disk is full: {err}"
    );
    std::fs::remove_file(&filler).unwrap();
    let db = data.join("keel.db");
    assert!(integrity_ok(&db));
    let events = home.events(&session);
    assert!(
        events.iter().any(|e| e["type"] == "run_completed"),
        "the first turn is intact"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
    }
    // With room again, the interrupted run finishes.
    let out = home.run(&["resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
