//! Connection limits for both listeners: at most `server.max_connections` open at once
//! (one more is closed as soon as it is accepted), and a connection that has not sent
//! its opening within `server.handshake_timeout` is closed. The opening is the HTTP/2
//! preface and the first frame header on the gRPC listener (after the TLS handshake,
//! which shares the same budget), and the first request's headers on the HTTP one.
//! After it, a connection may stay idle as long as it likes: KEDA keeps one open per
//! scaler address between polls, and HTTP/2 keepalive pings notice a dead peer.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;

/// The HTTP/2 client preface (24 bytes) and the header of the SETTINGS frame that must
/// follow it (9 bytes).
pub const HTTP2_OPENING_BYTES: usize = 24 + 9;

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a new connection has to open (TLS and HTTP/2's preface).
    pub handshake_timeout: Duration,
    /// One permit per open connection.
    pub permits: Arc<Semaphore>,
}

impl Limits {
    /// The limits of `server.handshake_timeout` and `server.max_connections`.
    pub fn new(handshake_timeout: Duration, max_connections: u32) -> Self {
        Self {
            handshake_timeout,
            permits: Arc::new(Semaphore::new(max_connections as usize)),
        }
    }

    /// A permit for one more connection, or `None` at the limit.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

/// What ends a connection's opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// This many bytes received.
    Bytes(usize),
    /// An HTTP/1 request's headers: a blank line received.
    HeaderEnd,
}

/// A connection holding its permit, refused once its opening is overdue.
pub struct Guarded<IO> {
    inner: IO,
    _permit: OwnedSemaphorePermit,
    /// Until the opening is complete: its deadline and what is still awaited.
    opening: Option<(Pin<Box<Sleep>>, Awaited)>,
}

/// What of the opening has not arrived yet.
#[derive(Debug, Clone, Copy)]
enum Awaited {
    Bytes(usize),
    /// The last bytes seen, to find `\r\n\r\n` across reads.
    HeaderEnd([u8; 3]),
}

impl Awaited {
    /// Takes in `bytes`; true once the opening is complete.
    fn take(&mut self, bytes: &[u8]) -> bool {
        match self {
            Awaited::Bytes(left) => {
                *left = left.saturating_sub(bytes.len());
                *left == 0
            }
            Awaited::HeaderEnd(tail) => {
                let mut window: Vec<u8> = tail.to_vec();
                window.extend_from_slice(bytes);
                if window.windows(4).any(|w| w == b"\r\n\r\n") {
                    return true;
                }
                let keep = window.len().min(3);
                let mut last = [0u8; 3];
                last[3 - keep..].copy_from_slice(&window[window.len() - keep..]);
                *tail = last;
                false
            }
        }
    }
}

impl<IO> Guarded<IO> {
    /// `inner` with its permit, whose opening must be complete by `deadline`.
    pub fn new(
        inner: IO,
        permit: OwnedSemaphorePermit,
        opening: Opening,
        deadline: Instant,
    ) -> Self {
        let awaited = match opening {
            Opening::Bytes(n) => Awaited::Bytes(n),
            Opening::HeaderEnd => Awaited::HeaderEnd([0; 3]),
        };
        Self {
            inner,
            _permit: permit,
            opening: Some((Box::pin(tokio::time::sleep_until(deadline)), awaited)),
        }
    }

    /// The connection inside.
    pub fn get_ref(&self) -> &IO {
        &self.inner
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some((_, awaited)) = &mut this.opening
                    && awaited.take(&buf.filled()[before..])
                {
                    this.opening = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let overdue = match &mut this.opening {
                    Some((deadline, _)) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if overdue {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection's opening did not arrive within server.handshake_timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts from `listener` until `shutdown`, at most `limits`' connections at once;
/// one more is closed at once (and counted in the log, at most once a minute).
pub async fn accept(
    listener: &TcpListener,
    limits: &Limits,
    refused_log: &mut Option<Instant>,
) -> io::Result<(TcpStream, OwnedSemaphorePermit)> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        match limits.admit() {
            Some(permit) => return Ok((tcp, permit)),
            None => {
                if refused_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(%peer, "server.max_connections reached: connection closed");
                    *refused_log = Some(Instant::now());
                }
                drop(tcp);
            }
        }
    }
}

/// The plaintext gRPC listener's connections, guarded, until `shutdown`.
pub fn incoming(
    listener: TcpListener,
    limits: Limits,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Guarded<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tasks.spawn(async move {
        let mut refused_log = None;
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = accept(&listener, &limits, &mut refused_log) => accepted,
            };
            match accepted {
                Ok((tcp, permit)) => {
                    let _ = tcp.set_nodelay(true);
                    let deadline = Instant::now() + limits.handshake_timeout;
                    let guarded =
                        Guarded::new(tcp, permit, Opening::Bytes(HTTP2_OPENING_BYTES), deadline);
                    if tx.send(Ok(guarded)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The HTTP listener, guarded, for axum.
pub struct HttpListener {
    /// The bound listener.
    pub listener: TcpListener,
    /// Its limits, shared with nothing else.
    pub limits: Limits,
    refused_log: Option<Instant>,
}

impl HttpListener {
    /// Guards `listener` with `limits`.
    pub fn new(listener: TcpListener, limits: Limits) -> Self {
        Self {
            listener,
            limits,
            refused_log: None,
        }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Guarded<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match accept(&self.listener, &self.limits, &mut self.refused_log).await {
                Ok((tcp, permit)) => {
                    let peer = tcp
                        .peer_addr()
                        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                    let deadline = Instant::now() + self.limits.handshake_timeout;
                    return (
                        Guarded::new(tcp, permit, Opening::HeaderEnd, deadline),
                        peer,
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_end_is_found_across_reads() {
        let mut awaited = Awaited::HeaderEnd([0; 3]);
        assert!(!awaited.take(b"GET / HTTP/1.1\r\nHost: x\r"));
        assert!(!awaited.take(b"\n"));
        assert!(!awaited.take(b"\r"));
        assert!(awaited.take(b"\n"));
        let mut bytes = Awaited::Bytes(33);
        assert!(!bytes.take(&[0; 24]));
        assert!(bytes.take(&[0; 9]));
    }
}
