//! A power cut under `Durability::Normal`: what was fsynced survives, the rest may not. A
//! fault-injecting SQLite VFS (`powercut`, made the default in this test binary) wraps the
//! system's and keeps, for every file, its contents as of its last fsync; the "cut" is a copy
//! of those images, opened as the database after the crash. Acknowledged revocations and
//! deletions must be in it; an acknowledged plain append need not be (and is not: the test
//! would prove nothing if `Normal` fsynced everything).

mod common;

use common::{agent, session_record};

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use keel_core::{TenantId, Timestamp};
use keel_store::{
    ApiKeyRecord, Durability, KeyScope, SqliteOptions, SqliteStore, Store, TenantRecord,
};
use rusqlite::ffi;

/// A file's contents at its last fsync, and how many fsyncs it had.
type Synced = (Vec<u8>, u64);

/// Every file's, by path.
static SYNCED: Mutex<Option<HashMap<PathBuf, Synced>>> = Mutex::new(None);

/// Our file: the header SQLite sees, then the wrapped file of the system VFS.
#[repr(C)]
struct CutFile {
    base: ffi::sqlite3_file,
    path: *mut PathBuf,
    real: *mut ffi::sqlite3_file,
}

static mut REAL_VFS: *mut ffi::sqlite3_vfs = std::ptr::null_mut();

unsafe fn real(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    unsafe {
        let real = (*(file as *mut CutFile)).real;
        (real, &*(*real).pMethods)
    }
}

unsafe extern "C" fn x_open(
    _: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let cut = file as *mut CutFile;
        let inner = (file as *mut u8).add(std::mem::size_of::<CutFile>()) as *mut ffi::sqlite3_file;
        let vfs = REAL_VFS;
        let rc = ((*vfs).xOpen.unwrap())(vfs, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*inner).pMethods.is_null() {
            (*cut).base.pMethods = std::ptr::null();
            return rc;
        }
        (*cut).real = inner;
        (*cut).path = if name.is_null() {
            std::ptr::null_mut()
        } else {
            let path = CStr::from_ptr(name).to_string_lossy().into_owned();
            Box::into_raw(Box::new(PathBuf::from(path)))
        };
        (*cut).base.pMethods = &METHODS;
        rc
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (inner, methods) = real(file);
        let rc = (methods.xClose.unwrap())(inner);
        let path = (*(file as *mut CutFile)).path;
        if !path.is_null() {
            drop(Box::from_raw(path));
        }
        rc
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe {
        let (inner, methods) = real(file);
        let rc = (methods.xSync.unwrap())(inner, flags);
        let path = (*(file as *mut CutFile)).path;
        if rc == ffi::SQLITE_OK && !path.is_null() {
            let bytes = std::fs::read(&*path).unwrap_or_default();
            let mut synced = SYNCED.lock().unwrap();
            let entry = synced
                .get_or_insert_with(HashMap::new)
                .entry((*path).clone())
                .or_default();
            entry.0 = bytes;
            entry.1 += 1;
        }
        rc
    }
}

macro_rules! delegate {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            unsafe {
                let (inner, methods) = real(file);
                (methods.$method.unwrap())(inner $(, $arg)*)
            }
        }
    };
}

delegate!(x_read, xRead, (buf: *mut c_void, amount: c_int, offset: i64) -> c_int);
delegate!(x_write, xWrite, (buf: *const c_void, amount: c_int, offset: i64) -> c_int);
delegate!(x_truncate, xTruncate, (size: i64) -> c_int);
delegate!(x_file_size, xFileSize, (size: *mut i64) -> c_int);
delegate!(x_lock, xLock, (level: c_int) -> c_int);
delegate!(x_unlock, xUnlock, (level: c_int) -> c_int);
delegate!(x_check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int);
delegate!(x_file_control, xFileControl, (op: c_int, arg: *mut c_void) -> c_int);
delegate!(x_sector_size, xSectorSize, () -> c_int);
delegate!(x_device_characteristics, xDeviceCharacteristics, () -> c_int);
delegate!(x_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int);
delegate!(x_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int);
delegate!(x_shm_barrier, xShmBarrier, () -> ());
delegate!(x_shm_unmap, xShmUnmap, (delete: c_int) -> c_int);
delegate!(x_fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int);
delegate!(x_unfetch, xUnfetch, (offset: i64, page: *mut c_void) -> c_int);

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

/// Makes `powercut` SQLite's default VFS in this process.
fn install_powercut_vfs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        let system = ffi::sqlite3_vfs_find(std::ptr::null());
        assert!(!system.is_null(), "SQLite has no default VFS");
        REAL_VFS = system;
        let mut vfs = *system;
        vfs.zName = c"powercut".as_ptr() as *const c_char;
        vfs.szOsFile = (*system).szOsFile + std::mem::size_of::<CutFile>() as c_int;
        vfs.xOpen = Some(x_open);
        vfs.pNext = std::ptr::null_mut();
        let vfs = Box::leak(Box::new(vfs));
        assert_eq!(ffi::sqlite3_vfs_register(vfs, 1), ffi::SQLITE_OK);
    });
}

/// The fsyncs `path` has had so far.
fn syncs(path: &Path) -> u64 {
    SYNCED
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|s| s.get(path))
        .map_or(0, |(_, n)| *n)
}

/// What a power cut now leaves of `files` (as synced), written under `into`.
fn cut(files: &[PathBuf], into: &Path) {
    let synced = SYNCED.lock().unwrap();
    let synced = synced.as_ref().expect("something was fsynced");
    for file in files {
        if let Some((bytes, _)) = synced.get(file) {
            std::fs::write(into.join(file.file_name().unwrap()), bytes).unwrap();
        }
    }
}

fn key(prefix: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        prefix: prefix.into(),
        tenant: TenantId::default_tenant(),
        scope: KeyScope::Tenant,
        secret_hash: vec![7; 32],
        created_at: Timestamp::from_millis(1_000),
        revoked_at: None,
    }
}

#[tokio::test]
async fn revocations_and_deletions_acknowledged_under_normal_durability_survive_a_power_cut() {
    install_powercut_vfs();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let wal = dir.path().join("keel.db-wal");
    let options = SqliteOptions {
        durability: Durability::Normal,
        ..SqliteOptions::new(&db)
    };
    let store = SqliteStore::open(options).unwrap();
    let tenant = TenantId::default_tenant();
    let at = Timestamp::from_millis(2_000);
    store
        .create_tenant(&TenantRecord {
            id: tenant.clone(),
            name: "default".into(),
            created_at: at,
        })
        .await
        .unwrap();
    store.create_api_key(&key("kk_revoked")).await.unwrap();
    store.create_api_key(&key("kk_kept")).await.unwrap();
    let doomed = session_record(1);
    store.create_session(&doomed, Vec::new()).await.unwrap();
    store.put_agent(&tenant, agent("archived")).await.unwrap();

    // A plain write costs no fsync under `Normal`; a revocation costs one, of the WAL.
    let before = syncs(&wal);
    store.put_agent(&tenant, agent("plain")).await.unwrap();
    assert_eq!(
        syncs(&wal),
        before,
        "a plain write was fsynced under Normal"
    );
    store.revoke_api_key("kk_revoked", at).await.unwrap();
    assert_eq!(
        syncs(&wal),
        before + 1,
        "a revocation is one fsync of the WAL"
    );
    assert!(store.delete_session(&tenant, &doomed.id).await.unwrap());
    assert!(store.archive_agent(&tenant, "archived", at).await.unwrap());
    // Acknowledged, but never fsynced: a cut may drop it.
    store.put_agent(&tenant, agent("lost")).await.unwrap();

    let after = tempfile::tempdir().unwrap();
    cut(&[db.clone(), wal.clone()], after.path());
    drop(store);
    let survivor = SqliteStore::open(SqliteOptions::new(after.path().join("keel.db"))).unwrap();
    let revoked = survivor.get_api_key("kk_revoked").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at), "the revocation came undone");
    assert!(survivor.get_api_key("kk_kept").await.unwrap().is_some());
    assert!(
        survivor
            .get_session(&tenant, &doomed.id)
            .await
            .unwrap()
            .is_none(),
        "the deleted session came back"
    );
    let listed: Vec<String> = survivor
        .list_agents(&tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(
        listed,
        ["plain"],
        "the archived agent came back, or the unsynced tail survived (then this test proves nothing)"
    );
}
