//! A fault-injecting fake Prometheus for tests: a loopback HTTP server whose every
//! answer a test chooses (status, headers, body, chunking, delay), recording the
//! requests and the most connections open at once.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// What the fake answers: the status line's code, extra headers, and the body.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body in chunks of this size without a Content-Length.
    pub chunked: Option<usize>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// With `chunked`: wait this long between chunks (a body that trickles in).
    pub chunk_delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            chunked: None,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
        }
    }
}

/// A fake Prometheus: answers every request with `reply(path_and_query)`, and records
/// the request heads and the most connections open at once.
pub struct Fake {
    pub url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub most_open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    pub async fn start(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let most_open = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(reply);
        let (log, most) = (requests.clone(), most_open.clone());
        let task = tokio::spawn(async move {
            // Bounded: a test makes at most a few thousand requests.
            for _ in 0..16_384 {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (reply, log, open, most) =
                    (reply.clone(), log.clone(), open.clone(), most.clone());
                tokio::spawn(async move {
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 65_536 {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            break;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    log.lock().unwrap().push(head);
                    let reply = reply(&path);
                    tokio::time::sleep(reply.delay).await;
                    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
                    for (name, value) in &reply.headers {
                        out.push_str(&format!("{name}: {value}\r\n"));
                    }
                    match reply.chunked {
                        None => {
                            out.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
                            let _ = stream.write_all(out.as_bytes()).await;
                            let _ = stream.write_all(&reply.body).await;
                        }
                        Some(size) => {
                            out.push_str("Transfer-Encoding: chunked\r\n\r\n");
                            let _ = stream.write_all(out.as_bytes()).await;
                            for chunk in reply.body.chunks(size) {
                                tokio::time::sleep(reply.chunk_delay).await;
                                let frame = format!("{:x}\r\n", chunk.len());
                                if stream.write_all(frame.as_bytes()).await.is_err()
                                    || stream.write_all(chunk).await.is_err()
                                    || stream.write_all(b"\r\n").await.is_err()
                                {
                                    break;
                                }
                            }
                            let _ = stream.write_all(b"0\r\n\r\n").await;
                        }
                    }
                    let _ = stream.shutdown().await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            url,
            requests,
            most_open,
            task,
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An instant vector answer of one series per label set.
pub fn vector(series: &[&str]) -> String {
    let result: Vec<String> = series
        .iter()
        .map(|labels| format!(r#"{{"metric":{labels},"value":[{},"3"]}}"#, now()))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        result.join(",")
    )
}

/// Now, in Unix seconds, as Prometheus stamps an instant query's samples.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
