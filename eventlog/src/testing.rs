//! A real Kafka-compatible broker for tests: a [tansu](https://github.com/tansu-io/tansu) process
//! with in-memory storage on a free loopback port.
//!
//! The binary comes from `TANSU_BIN`, else `${XDG_CACHE_HOME:-$HOME/.cache}/drawdown/tansu/bin/tansu`
//! (`bash scripts/test.sh` installs it there through `scripts/tansu.sh`). Without it, starting a
//! broker panics: Kafka tests never skip silently.
//!
//! Each broker runs under a small watchdog shell that holds a pipe from the test process: when
//! the pipe closes (the [`Broker`] is dropped, or the test process exits or dies, which is how
//! the one [`shared`] broker of a test process ends) the watchdog kills tansu and removes its
//! temporary directory. No tansu process outlives the tests that started it.
//!
//! These are test helpers: they panic, with the broker's log where it helps, instead of
//! returning errors.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long a starting broker may take to answer metadata requests.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports tried before giving up (another process may take a free port before tansu binds it).
const START_ATTEMPTS: usize = 3;

/// Runs tansu in the background, prints its pid, waits for stdin to close, then kills tansu
/// (continuing it first in case a test left it paused) and removes the broker's directory.
/// Arguments: `$0` tansu binary, `$1` port, `$2` cluster id, `$3` directory.
const WATCHDOG: &str = r#"
"$0" broker --listener-url "tcp://127.0.0.1:$1" --advertised-listener-url "tcp://127.0.0.1:$1" \
    --storage-engine memory://tansu/ --cluster-id "$2" >"$3/tansu.log" 2>&1 </dev/null &
pid=$!
echo "$pid"
read -r _closed || true
kill -CONT "$pid" 2>/dev/null
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$3"
"#;

/// A running tansu broker, killed when dropped.
pub struct Broker {
    port: u16,
    /// The tansu process (not the watchdog), for pause/resume.
    pid: u32,
    dir: PathBuf,
    /// The watchdog shell and the write end of its stdin; closing it stops the broker.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// The one broker of this test process, started on first use. Tests share it by using their
/// own topic prefix ([`prefix`]); a test that pauses a broker starts its own instead.
pub fn shared() -> &'static Broker {
    static SHARED: OnceLock<Broker> = OnceLock::new();
    SHARED.get_or_init(Broker::start)
}

/// A topic prefix not used before in this process, e.g. `t4242-7.` (topics `t4242-7.usage.raw`).
pub fn prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}-{}.", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Where the tansu binary is: `TANSU_BIN`, else the cache directory `scripts/tansu.sh` installs to.
pub fn tansu_path() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("drawdown/tansu/bin/tansu")
}

impl Broker {
    /// Starts a broker on a free port and waits until it answers metadata requests.
    pub fn start() -> Broker {
        let tansu = tansu_path();
        assert!(
            tansu.is_file(),
            "the tansu broker is not installed at {} (set TANSU_BIN, or run `bash scripts/test.sh`, \
             which installs it through scripts/tansu.sh)",
            tansu.display()
        );
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Broker::try_start(&tansu) {
                Ok(broker) => return broker,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("tansu did not start:\n{}", failures.join("\n---\n"));
    }

    fn try_start(tansu: &Path) -> Result<Broker, String> {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("drawdown-tansu-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(tansu)
            .arg(port.to_string())
            .arg(format!("drawdown-test-{port}"))
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn sh for {}: {e}", tansu.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the watchdog shell has no stdin/stdout pipe".to_string());
        };
        let mut line = String::new();
        let pid = BufReader::new(stdout).read_line(&mut line).ok().and_then(|_| line.trim().parse().ok());
        let broker = Broker { port, pid: pid.unwrap_or(0), dir, watchdog: Mutex::new(Some((child, stdin))) };
        if pid.is_none() {
            return Err(format!("the watchdog printed no pid but {line:?}"));
        }
        broker.wait_until_ready()?;
        Ok(broker)
    }

    /// Polls until the broker accepts connections and answers a metadata request.
    fn wait_until_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = format!("127.0.0.1:{}", self.port);
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &address)
            .set("log_level", "3")
            .create()
            .map_err(|e| format!("create a metadata client: {e}"))?;
        loop {
            if !self.is_running() {
                return Err(format!("tansu on port {} exited:\n{}", self.port, self.log()));
            }
            let connected = TcpStream::connect_timeout(
                &address.parse().map_err(|e| format!("{address}: {e}"))?,
                Duration::from_millis(200),
            )
            .is_ok();
            if connected && client.fetch_metadata(None, Duration::from_secs(2)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu on port {} did not answer within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kafka://127.0.0.1:PORT?prefix=PREFIX`; append `&name=value` for more URL parameters.
    pub fn url(&self, prefix: &str) -> String {
        format!("kafka://127.0.0.1:{}?prefix={prefix}", self.port)
    }

    /// Stops the broker process (SIGSTOP): it keeps its topics but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues a paused broker (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// What the broker has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        let path = self.dir.join("tansu.log");
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
    }

    fn is_running(&self) -> bool {
        Command::new("kill")
            .args(["-0", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid.to_string()]).status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "kill {signal} {} (tansu) failed: {status:?}",
            self.pid
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let watchdog = self.watchdog.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((mut child, stdin)) = watchdog {
            // Closing its stdin tells the watchdog to kill tansu and clean up.
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}
