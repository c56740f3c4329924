//! Hot reload of the mounted ConfigMap. The kubelet swaps a `..data` symlink to update
//! it, so a watch on the file itself goes silent after the first swap: this watches the
//! directory, and also compares the file's content on a timer, for filesystems that
//! send no events. A new file that does not validate is refused: the last good config
//! keeps serving, and the errors are logged, counted and shown in Explain.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, atomic::AtomicUsize},
    time::{Duration, SystemTime},
};

use notify::{RecursiveMode, Watcher};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::Config;
pub use super::read::{
    MAX_CONFIG_BYTES, MAX_HUNG_READS, READ_TIMEOUT, ReadError, read_bounded, read_off_runtime,
};

/// How often the file's content is compared even without an event.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Events come in bursts (a swap is several renames): wait for the burst to end.
const SETTLE: Duration = Duration::from_millis(100);

/// The same refusal is logged at most this often (it is counted every time).
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The outcome of the latest reload attempts, for Explain and /metrics.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// When the config in force was loaded.
    pub last_success: SystemTime,
    /// Why the newest file was refused; `None` once a good file loads.
    pub last_error: Option<String>,
    /// Refused files since start.
    pub failures: u64,
}

impl ReloadStatus {
    /// The status at start: the config in force loaded now.
    pub fn new() -> Self {
        Self {
            last_success: SystemTime::now(),
            last_error: None,
            failures: 0,
        }
    }
}

impl Default for ReloadStatus {
    fn default() -> Self {
        Self::new()
    }
}

/// Called after every reload attempt (to count it in /metrics).
pub type OnReload = Box<dyn Fn(&ReloadStatus) + Send + Sync>;

/// Watches `path` until `shutdown`, sending each new valid config on `configs`.
pub struct Reloader {
    /// The config file (a mounted ConfigMap's key).
    pub path: PathBuf,
    /// Where each new valid config goes.
    pub configs: watch::Sender<Arc<Config>>,
    /// The outcome of the latest attempts, shared with Explain.
    pub status: Arc<Mutex<ReloadStatus>>,
    /// Called after every attempt.
    pub on_reload: OnReload,
    /// How often the file is compared even without a change event.
    pub poll_interval: Duration,
}

impl Reloader {
    /// Runs until `shutdown`. `loaded` is the text the config in force was parsed from.
    pub async fn run(self, loaded: String, shutdown: CancellationToken) {
        let (events_tx, mut events) = mpsc::channel::<()>(16);
        let directory = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        // The watcher lives as long as this loop; without it the timer still reloads.
        let _watcher = match notify::recommended_watcher(move |_event| {
            let _ = events_tx.try_send(());
        }) {
            Ok(mut watcher) => match watcher.watch(&directory, RecursiveMode::NonRecursive) {
                Ok(()) => Some(watcher),
                Err(e) => {
                    tracing::warn!(dir = %directory.display(), error = %e, "cannot watch the config directory; comparing content every {:?}", self.poll_interval);
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no filesystem watcher; comparing content every {:?}", self.poll_interval);
                None
            }
        };
        let mut seen = Seen {
            text: loaded,
            logged: None,
            busy: Arc::new(AtomicUsize::new(0)),
        };
        let mut ticker = tokio::time::interval(self.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
                Some(()) = events.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while events.try_recv().is_ok() {}
                }
            }
            // A read that hangs must not hold shutdown up.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.check(&mut seen) => {}
            }
        }
    }

    /// Reads the file; when its content changed, validates it and swaps it in.
    async fn check(&self, seen: &mut Seen) {
        let text = match read_off_runtime(&self.path, &seen.busy).await {
            Ok(text) => text,
            Err(ReadError::NotFound(_)) => return,
            Err(e) => {
                // Whatever is read next is new: the same good file restored clears this.
                seen.text.clear();
                self.refuse(e.to_string(), &mut seen.logged);
                return;
            }
        };
        let last_seen = &mut seen.text;
        if text == *last_seen {
            return;
        }
        match Config::parse(&text) {
            Ok(config) => {
                *last_seen = text;
                let status = {
                    let mut status = self.status.lock().expect("status lock");
                    status.last_success = SystemTime::now();
                    status.last_error = None;
                    status.clone()
                };
                self.configs.send_replace(Arc::new(config));
                (self.on_reload)(&status);
                tracing::info!(path = %self.path.display(), "config reloaded");
            }
            Err(e) => {
                *last_seen = text;
                self.refuse(e.to_string(), &mut seen.logged);
            }
        }
    }

    /// Counts a refused file (every time) and logs it (the same error at most once per
    /// [`LOG_EVERY`]).
    fn refuse(&self, error: String, logged: &mut Option<(String, Instant)>) {
        let repeat = logged
            .as_ref()
            .is_some_and(|(last, at)| *last == error && at.elapsed() < LOG_EVERY);
        if !repeat {
            tracing::error!(path = %self.path.display(), %error, "new config refused; the last good config keeps serving");
            *logged = Some((error.clone(), Instant::now()));
        }
        let status = {
            let mut status = self.status.lock().expect("status lock");
            status.failures += 1;
            status.last_error = Some(error);
            status.clone()
        };
        (self.on_reload)(&status);
    }
}

/// What the reloader has seen of the file.
struct Seen {
    /// The text last parsed (empty after a read error, so that any text read next counts
    /// as new).
    text: String,
    /// The refusal last logged, and when.
    logged: Option<(String, Instant)>,
    /// Reads in flight (hung ones included).
    busy: Arc<AtomicUsize>,
}
