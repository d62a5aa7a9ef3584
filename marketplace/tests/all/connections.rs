//! A slow or idle client cannot hold the server: half-sent requests and idle keep-alive
//! connections are closed after the header timeout, a request that takes too long answers
//! 408, and past the connection limit new clients wait for room instead of exhausting the
//! server. Real sockets on loopback against `serve_with`.

use std::time::Duration;

use nexus_marketplace::server::{AppState, ConnectionLimits, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::common::{Env, Options, runtime};

/// Serves `env`'s market on a loopback port with `limits`; the server stops with the runtime.
async fn start(env: &Env, limits: ConnectionLimits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let state = AppState { market: env.market.clone(), public_url: format!("http://{address}") };
    tokio::spawn(serve_with(listener, state, limits, std::future::pending()));
    address
}

/// Reads until the server closes the connection or answers; `None` if neither happens
/// within a generous bound (a liveness guard, not a timing assertion).
async fn closed_or_answered(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = vec![0; 4096];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buffer[..n]).into_owned()),
        Ok(Err(_)) => Some(String::new()),
        Err(_) => None,
    }
}

async fn healthz(address: std::net::SocketAddr) -> u16 {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    client.get(format!("http://{address}/healthz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[test]
fn slow_and_idle_clients_are_closed_and_others_are_served() {
    runtime().block_on(async {
        let env = Env::with(false, Options { samples: false, ..Options::default() }).await;
        let limits = ConnectionLimits { header_timeout: Duration::from_millis(500), ..ConnectionLimits::default() };
        let address = start(&env, limits).await;

        // Two hundred idle connections and one slowloris sending half a request.
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(address).await.unwrap());
        }
        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: nexus\r\nx-slow: ").await.unwrap();

        assert_eq!(healthz(address).await, 200, "others are served meanwhile");
        let answer = closed_or_answered(&mut slow).await.expect("the half-sent request was closed");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
        for stream in idle.iter_mut().take(5) {
            let answer = closed_or_answered(stream).await.expect("the idle connection was closed");
            assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
        assert_eq!(healthz(address).await, 200);
    })
}

#[test]
fn past_the_connection_limit_clients_wait_for_room() {
    runtime().block_on(async {
        let env = Env::with(false, Options { samples: false, ..Options::default() }).await;
        let limits = ConnectionLimits {
            max_connections: 3,
            header_timeout: Duration::from_millis(400),
            ..ConnectionLimits::default()
        };
        let address = start(&env, limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(address).await.unwrap());
        }
        // The fourth is served once the idle ones are closed, never refused.
        assert_eq!(healthz(address).await, 200);
        for stream in &mut held {
            assert_eq!(closed_or_answered(stream).await.as_deref(), Some(""), "closed when idle");
        }
    })
}

#[test]
fn a_request_that_takes_too_long_answers_408_in_the_error_shape() {
    runtime().block_on(async {
        let env = Env::with(false, Options { samples: false, ..Options::default() }).await;
        let limits = ConnectionLimits { body_timeout: Duration::from_millis(300), ..ConnectionLimits::default() };
        let address = start(&env, limits).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        // Headers promise a body that never comes.
        let head = format!(
            "POST /v1/tenants HTTP/1.1\r\nhost: nexus\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{",
            env.operator
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = closed_or_answered(&mut stream).await.expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
        assert!(answer.contains("x-request-id: req_"), "{answer}");
    })
}
