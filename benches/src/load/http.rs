//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per task, made with
//! hyper's low-level `client::conn` API (no pool, no extra task per request), reconnecting after
//! any error; and the retry loop that re-sends a body until the server acknowledges or refuses it.

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// No single request may take longer than this; a stalled one is a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where requests go and the headers every request carries.
#[derive(Debug)]
pub struct Endpoint {
    /// `host:port`, to connect to.
    authority: String,
    host: HeaderValue,
    key: HeaderValue,
}

impl Endpoint {
    /// `url` is `http://host[:port][/]` (plain HTTP only; the port defaults to 80).
    pub fn parse(url: &str, api_key: &str) -> anyhow::Result<Self> {
        let rest =
            url.strip_prefix("http://").ok_or_else(|| anyhow!("`{url}`: only http:// urls are supported"))?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            bail!("`{url}`: give the server's base url without a path");
        }
        let authority = if host.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        Ok(Self {
            authority,
            host: HeaderValue::from_str(host).with_context(|| format!("`{host}` as a Host header"))?,
            key: HeaderValue::from_str(api_key).context("the API key is not a valid header value")?,
        })
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// One keep-alive connection; (re)connects lazily.
pub struct Connection {
    endpoint: std::sync::Arc<Endpoint>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(endpoint: std::sync::Arc<Endpoint>) -> Self {
        Self { endpoint, sender: None }
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.call(Method::GET, path, Bytes::new()).await
    }

    /// One request. Any error drops the connection, so the next call reconnects.
    pub async fn call(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Answer> {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body)).await;
        let result = result.unwrap_or_else(|_| Err(anyhow!("no answer within {REQUEST_TIMEOUT:?}")));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Answer> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.endpoint.host.clone())
            .header("x-credyt-api-key", self.endpoint.key.clone());
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request.body(Full::new(body)).context("building the request")?;
        let sender = self.ready_sender().await?;
        let response = sender.send_request(request).await.context("sending the request")?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.into_body().collect().await.context("reading the response")?.to_bytes();
        Ok(Answer { status, retry_after, body })
    }

    async fn ready_sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().ok_or_else(|| anyhow!("no connection"))?;
        sender.ready().await.context("the connection closed")?;
        Ok(sender)
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let authority = &self.endpoint.authority;
        let stream =
            TcpStream::connect(authority).await.with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("the HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors surface on the sender.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// Whether a status means "not now, send the same body again" (overload, unavailable).
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

/// The final answer of [`until_answered`] and what it took.
pub struct Answered {
    /// 2xx (acknowledged) or a status that must not be retried (refused).
    pub answer: Answer,
    /// Latency of the attempt that got `answer`.
    pub latency: Duration,
    /// Requests sent, the retries included.
    pub attempts: u64,
}

/// Sends `body` until the answer is neither retryable nor a transport error; `on_retry` hears
/// each retried failure (`"429"`, `"503"` or `"transport"`). Pauses `pause()` between attempts
/// (shortened to `Retry-After` when that is shorter). Fails after `give_up_after` of failures.
pub async fn until_answered(
    conn: &mut Connection,
    method: &Method,
    path: &str,
    body: &Bytes,
    give_up_after: Duration,
    mut pause: impl FnMut() -> Duration,
    mut on_retry: impl FnMut(&str),
) -> anyhow::Result<Answered> {
    let first = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let started = Instant::now();
        let failure = match conn.call(method.clone(), path, body.clone()).await {
            Ok(answer) if !is_retryable(answer.status) => {
                return Ok(Answered { answer, latency: started.elapsed(), attempts });
            }
            Ok(answer) => {
                on_retry(answer.status.as_str());
                let wait = pause();
                (format!("{}", answer.status), answer.retry_after.map_or(wait, |r| r.min(wait)))
            }
            Err(err) => {
                on_retry("transport");
                (format!("{err:#}"), pause())
            }
        };
        if first.elapsed() >= give_up_after {
            bail!(
                "{method} {path} not answered after {attempts} attempts in {give_up_after:?}: {}",
                failure.0
            );
        }
        tokio::time::sleep(failure.1).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_a_base_url_with_or_without_port_and_slash() {
        let e = Endpoint::parse("http://127.0.0.1:8080/", "sk_test_x").unwrap();
        assert_eq!((e.authority.as_str(), e.host.to_str().unwrap()), ("127.0.0.1:8080", "127.0.0.1:8080"));
        let e = Endpoint::parse("http://localhost", "k").unwrap();
        assert_eq!(e.authority, "localhost:80");
        assert!(Endpoint::parse("https://x", "k").is_err());
        assert!(Endpoint::parse("http://x/api", "k").is_err());
    }

    /// A one-connection-at-a-time HTTP server on a thread answering each request with the next
    /// scripted response (`None`: drop the connection unanswered); the request bodies it read
    /// come back on the channel.
    fn scripted_server(script: Vec<Option<&'static str>>) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (bodies, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            'connections: for stream in listener.incoming() {
                let mut reader = BufReader::new(stream.unwrap());
                loop {
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            continue 'connections;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    bodies.send(String::from_utf8(body).unwrap()).unwrap();
                    match script.next() {
                        Some(Some(response)) => reader.get_mut().write_all(response.as_bytes()).unwrap(),
                        Some(None) => continue 'connections,
                        None => return,
                    }
                }
            }
        });
        (url, received)
    }

    #[tokio::test]
    async fn the_same_body_is_resent_after_transport_errors_and_overload_until_acknowledged() {
        let (url, bodies) = scripted_server(vec![
            None,
            Some("HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"),
            Some("HTTP/1.1 204 No Content\r\n\r\n"),
            Some("HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 2\r\n\r\n{}"),
        ]);
        let mut conn = Connection::new(std::sync::Arc::new(Endpoint::parse(&url, "k").unwrap()));
        let body = Bytes::from_static(br#"{"events":[1]}"#);
        let mut retried = Vec::new();
        let started = Instant::now();
        let pause = || Duration::from_millis(20);
        let answered =
            until_answered(&mut conn, &Method::POST, "/events", &body, Duration::from_secs(10), pause, |k| {
                retried.push(k.to_string())
            })
            .await
            .unwrap();
        assert_eq!((answered.answer.status, answered.attempts), (StatusCode::NO_CONTENT, 3));
        assert_eq!(retried, ["transport", "429"]);
        assert!(started.elapsed() < Duration::from_millis(900), "Retry-After is capped by the pause");
        let received: Vec<String> = bodies.try_iter().collect();
        assert_eq!(received, vec![r#"{"events":[1]}"#; 3], "the very same body each time");
        // A refusal is answered, not retried.
        let refused = until_answered(
            &mut conn,
            &Method::POST,
            "/events",
            &body,
            Duration::from_secs(10),
            pause,
            |_| panic!("not retried"),
        )
        .await
        .unwrap();
        assert_eq!((refused.answer.status, refused.attempts), (StatusCode::UNPROCESSABLE_ENTITY, 1));
        assert_eq!(&refused.answer.body[..], b"{}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_given_up_on() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut conn = Connection::new(std::sync::Arc::new(
            Endpoint::parse(&format!("http://127.0.0.1:{port}"), "k").unwrap(),
        ));
        let result = until_answered(
            &mut conn,
            &Method::GET,
            "/",
            &Bytes::new(),
            Duration::from_millis(50),
            || Duration::from_millis(10),
            |_| {},
        )
        .await;
        let message = format!("{:#}", result.err().unwrap());
        assert!(message.contains("not answered after") && message.contains("connecting to"), "{message}");
    }

    #[test]
    fn only_overload_and_unavailable_are_retried() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!is_retryable(StatusCode::UNPROCESSABLE_ENTITY));
        assert!(!is_retryable(StatusCode::INTERNAL_SERVER_ERROR));
    }
}
