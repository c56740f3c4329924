//! Reading the config file with bounds: its size, the time one read may take, and how
//! many reads may hang at once, so that no file can stall or exhaust the service.

use std::{
    io::Read as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::oneshot;

/// The largest config file read: a larger one (or an endless one, such as a device) is
/// refused like an invalid file.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// How long one read of the config file may take: a FIFO nobody writes to or a hung
/// network filesystem is refused after it, and the service keeps serving meanwhile.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads that may hang at once: each keeps a thread until the process ends (a FIFO's
/// open returns only when a writer comes), so they are bounded.
pub const MAX_HUNG_READS: usize = 4;

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Mid-swap the path can briefly dangle; the next event or tick reads it.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Larger than [`MAX_CONFIG_BYTES`].
    #[error("{0} is larger than {MAX_CONFIG_BYTES} bytes: a config is a few KiB")]
    TooLarge(String),
    /// Not UTF-8.
    #[error("{0} is not UTF-8 text")]
    NotText(String),
    /// The read took longer than [`READ_TIMEOUT`].
    #[error(
        "reading {0} took longer than {READ_TIMEOUT:?} (a FIFO, a device or a hung filesystem?)"
    )]
    Timeout(String),
}

/// Reads a config file of at most [`MAX_CONFIG_BYTES`] as text. It blocks: call it off
/// the async runtime (see [`read_off_runtime`]).
pub fn read_bounded(path: &Path) -> Result<String, ReadError> {
    let shown = || path.display().to_string();
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ReadError::NotFound(shown())
        } else {
            ReadError::Io {
                path: shown(),
                source,
            }
        }
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ReadError::TooLarge(shown()));
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText(shown()))
}

/// [`read_bounded`] on a thread of its own, given up after [`READ_TIMEOUT`]. A read that
/// never returns keeps only its thread; `in_flight` counts them, and at
/// [`MAX_HUNG_READS`] no new one starts. The thread is not the runtime's, so shutdown
/// never waits for it.
pub async fn read_off_runtime(
    path: &Path,
    in_flight: &Arc<AtomicUsize>,
) -> Result<String, ReadError> {
    let shown = path.display().to_string();
    if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_HUNG_READS {
        in_flight.fetch_sub(1, Ordering::SeqCst);
        return Err(ReadError::Timeout(shown));
    }
    let busy = in_flight;
    let (tx, rx) = oneshot::channel();
    let (owned, flag) = (path.to_path_buf(), busy.clone());
    let spawned = std::thread::Builder::new()
        .name("config-read".into())
        .spawn(move || {
            let result = read_bounded(&owned);
            flag.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(result);
        });
    if let Err(source) = spawned {
        busy.fetch_sub(1, Ordering::SeqCst);
        return Err(ReadError::Io {
            path: shown,
            source,
        });
    }
    match tokio::time::timeout(READ_TIMEOUT, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) | Err(_) => Err(ReadError::Timeout(shown)),
    }
}
