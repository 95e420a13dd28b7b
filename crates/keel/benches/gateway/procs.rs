//! The benchmark's processes: which CPU each side runs on, starting the mock upstream and
//! keel as children (killed when dropped), and the CPU time a process has used, from
//! `/proc/<pid>/stat` (utime + stime) or, for children that have exited, `getrusage`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

/// Where each side runs. On a 2-core machine the load tool, the mock and this process share
/// one CPU and keel gets the other, so keel's cost never slows the load it is measured under;
/// `None` means unpinned (`KEEL_BENCH_PIN=off`, or fewer than 2 CPUs).
#[derive(Clone, Copy, Debug)]
pub struct Pinning {
    pub load: Option<usize>,
    pub keel: Option<usize>,
}

impl Pinning {
    pub fn choose() -> Pinning {
        let cpus = allowed_cpus();
        let off = std::env::var("KEEL_BENCH_PIN").is_ok_and(|v| v == "off" || v == "0");
        match cpus.as_slice() {
            [load, keel, ..] if !off => Pinning {
                load: Some(*load),
                keel: Some(*keel),
            },
            _ => Pinning {
                load: None,
                keel: None,
            },
        }
    }

    pub fn describe(&self) -> String {
        match (self.load, self.keel) {
            (Some(load), Some(keel)) => format!(
                "pinned: load tool, mock upstream and TTFT client on CPU {load}, keel on CPU {keel}"
            ),
            _ => "unpinned: every process shares every CPU".into(),
        }
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bit set that sched_getaffinity fills for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|cpu| libc::CPU_ISSET(*cpu, &set))
            .collect()
    }
}

fn set_affinity(cpu: usize) -> std::io::Result<()> {
    // SAFETY: sched_setaffinity on the calling thread with a bit set built here; it is a plain
    // system call, safe between fork and exec too.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins the calling thread (call it before starting any other thread, which inherit it).
pub fn pin_current(cpu: Option<usize>) {
    if let Some(cpu) = cpu
        && let Err(e) = set_affinity(cpu)
    {
        eprintln!("warning: cannot pin to CPU {cpu}: {e}");
    }
}

/// Makes `command`'s process run on `cpu` only.
pub fn pin_command(command: &mut Command, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        // SAFETY: the hook only makes one system call.
        unsafe {
            command.pre_exec(move || set_affinity(cpu));
        }
    }
}

/// A child process killed (and reaped) when dropped.
pub struct Process {
    pub child: Child,
    name: &'static str,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time used so far (user + system).
    pub fn cpu(&self) -> Duration {
        cpu_of(self.pid()).unwrap_or_else(|e| panic!("cannot read {}'s CPU time: {e}", self.name))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// keel's CPU time so far by the process's CPU clock (every thread, exited ones included):
/// finer than `/proc/<pid>/stat`, which counts in 10 ms ticks, coarser than one turn.
pub fn cpu_clock(process: &Process) -> Duration {
    let pid = process.pid() as libc::pid_t;
    // SAFETY: both calls only fill the values they are given.
    unsafe {
        let mut clock: libc::clockid_t = 0;
        if libc::clock_getcpuclockid(pid, &mut clock) != 0 {
            return process.cpu();
        }
        let mut now: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(clock, &mut now) != 0 {
            return process.cpu();
        }
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }
}

/// The bench binary itself, re-executed as the mock upstream; returns it and its address.
pub fn start_mock(cpu: Option<usize>, threads: usize) -> (Process, String) {
    let exe = std::env::current_exe().expect("cannot find the bench binary");
    let mut command = Command::new(exe);
    command
        .args(["mock-upstream", "--threads", &threads.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    pin_command(&mut command, cpu);
    let mut child = command.spawn().expect("cannot start the mock upstream");
    let stdout = child.stdout.take().expect("piped stdout");
    let process = Process {
        child,
        name: "the mock upstream",
    };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("cannot read the mock upstream's address");
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("the mock upstream said {line:?} instead of its address"))
        .to_string();
    (process, addr)
}

/// The variable the benches' `openai` providers read their (mock) key from (`api_key_env`).
pub const UPSTREAM_KEY_ENV: &str = "BENCH_UPSTREAM_KEY";

/// `keel --config <config> serve` on a free loopback port; returns it and its base URL once it
/// listens. Its stderr keeps being forwarded (prefixed), so a warning is seen and the pipe
/// never fills.
pub fn start_keel(config: &Path, auth: bool, cpu: Option<usize>) -> (Process, String) {
    // `KEEL_BENCH_KEEL` runs another build (say, of an earlier commit) for an A/B comparison.
    let binary =
        std::env::var("KEEL_BENCH_KEEL").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keel").into());
    start_keel_binary(Path::new(&binary), config, auth, cpu)
}

/// `start_keel` with the keel binary at `binary`.
pub fn start_keel_binary(
    binary: &Path,
    config: &Path,
    auth: bool,
    cpu: Option<usize>,
) -> (Process, String) {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        // The mock upstreams' key, under a name of its own: `OPENAI_API_KEY` would also give
        // keel the real OpenAI, whose model list it would ask for (a DNS lookup) at start.
        .env(UPSTREAM_KEY_ENV, "sk-bench")
        .env_remove("OPENAI_API_KEY")
        // Warnings only: no line per request (as `--quiet`, which older builds lack).
        .env("KEEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !auth {
        command.arg("--no-auth");
    }
    pin_command(&mut command, cpu);
    let mut child = command.spawn().expect("cannot start keel");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut process = Process {
        child,
        name: "keel",
    };
    let mut lines = BufReader::new(stderr);
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            let status = process.child.wait();
            panic!("keel exited before listening ({status:?}); it said:\n{said}");
        }
        if let Some(url) = line.trim().strip_prefix("keel listening on ") {
            let url = url.to_string();
            forward(lines);
            return (process, url);
        }
        said.push_str(&line);
    }
}

fn forward(mut lines: BufReader<ChildStderr>) {
    std::thread::spawn(move || {
        let mut text = String::new();
        while lines.read_line(&mut text).unwrap_or(0) > 0 {
            eprint!("keel: {text}");
            text.clear();
        }
        let _ = lines.read_to_end(&mut Vec::new());
    });
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// utime + stime of a running process (fields 14 and 15 of `/proc/<pid>/stat`).
pub fn cpu_of(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let ticks = field(14) + field(15);
    Ok(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// CPU time of every child this process has reaped (how the load tool's own cost is read).
pub fn reaped_children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}
