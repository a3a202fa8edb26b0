use std::sync::atomic::Ordering;

use axum::http::Version;
use tokio::time::Instant;

use super::timeouts::{Phase, Standing};
use super::*;

fn limits(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        ..Limits::default()
    }
}

#[tokio::test]
async fn the_cap_closes_new_connections_first_then_the_longest_idle() {
    let registry = Registry::new(limits(3));
    let a = registry.admit().expect("room");
    let b = registry.admit().expect("room");
    let c = registry.admit().expect("room");
    // a has served a request and idles; b never sent one; c is busy.
    drop(a.request_started(Version::HTTP_11));
    let _busy = c.request_started(Version::HTTP_11);
    assert_eq!(a.standing(), Standing::Between(a_since(&a)));

    let d = registry.admit().expect("b makes room");
    assert_eq!(b.standing(), Standing::Closing);
    assert_eq!(b.deadline().map(|(_, e)| e), Some(Expiry::Closed));
    assert_eq!(a.standing(), Standing::Between(a_since(&a)));

    // Now d is the only new one: it goes before the idle a.
    let e = registry.admit().expect("d makes room");
    assert_eq!(d.standing(), Standing::Closing);
    let _busy_too = e.request_started(Version::HTTP_11);
    let f = registry.admit().expect("a makes room");
    assert_eq!(a.standing(), Standing::Closing);
    let _g = registry.admit().expect("f, new, makes room");
    assert_eq!(f.standing(), Standing::Closing);
}

fn a_since(conn: &Conn) -> Instant {
    match conn.state().phase {
        Phase::Idle { since } | Phase::Header { since } => since,
        phase => panic!("not between requests: {phase:?}"),
    }
}

#[tokio::test]
async fn the_cap_refuses_when_every_connection_is_busy() {
    let registry = Registry::new(limits(2));
    let a = registry.admit().expect("room");
    let b = registry.admit().expect("room");
    let in_flight = [
        a.request_started(Version::HTTP_11),
        b.request_started(Version::HTTP_2),
    ];
    assert!(registry.admit().is_none());
    assert!(!registry.make_room());
    drop(in_flight);
    assert!(registry.admit().is_some(), "idle again: one makes room");
    registry.remove(b.id);
    registry.remove(a.id);
    assert!(registry.admit().is_some());
}

#[tokio::test(start_paused = true)]
async fn deadlines_follow_the_phase() {
    let limits = Limits {
        read_header_timeout: Duration::from_secs(10),
        max_connections: 1,
        idle_timeout: Duration::from_secs(90),
    };
    let conn = Arc::new(Conn::new(0, &limits));
    let start = Instant::now();
    assert_eq!(
        conn.deadline(),
        Some((start + Duration::from_secs(10), Expiry::Header)),
        "from the accept"
    );
    let first = conn.request_started(Version::HTTP_11);
    let second = conn.request_started(Version::HTTP_11);
    assert_eq!(conn.deadline(), None, "busy");
    drop(first);
    assert_eq!(conn.deadline(), None, "still one in flight");
    tokio::time::advance(Duration::from_secs(5)).await;
    drop(second);
    let idle = Instant::now();
    assert_eq!(
        conn.deadline(),
        Some((idle + Duration::from_secs(90), Expiry::Idle))
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    conn.bytes_read();
    assert_eq!(
        conn.deadline(),
        Some((Instant::now() + Duration::from_secs(10), Expiry::Header)),
        "the next request's clock starts at its first byte"
    );
    conn.bytes_read();
    assert_eq!(
        conn.deadline(),
        Some((idle + Duration::from_secs(40), Expiry::Header)),
        "and only there"
    );
    assert_eq!(conn.expired().await, Expiry::Header);
    assert_eq!(Instant::now(), idle + Duration::from_secs(40));
}

#[tokio::test(start_paused = true)]
async fn http2_connections_idle_whatever_frames_they_read() {
    let conn = Arc::new(Conn::new(0, &Limits::default()));
    drop(conn.request_started(Version::HTTP_2));
    let idle = Instant::now();
    tokio::time::advance(Duration::from_secs(1)).await;
    conn.bytes_read();
    assert_eq!(
        conn.deadline(),
        Some((idle + IDLE_TIMEOUT, Expiry::Idle)),
        "a PING or WINDOW_UPDATE starts no request"
    );
}

#[tokio::test(start_paused = true)]
async fn an_eviction_wakes_the_connection_at_once() {
    let conn = Arc::new(Conn::new(0, &Limits::default()));
    let busy = conn.request_started(Version::HTTP_11);
    let waiting = tokio::spawn({
        let conn = conn.clone();
        async move { conn.expired().await }
    });
    tokio::task::yield_now().await;
    assert!(!conn.evict(), "busy connections stay");
    drop(busy);
    assert!(conn.evict());
    assert_eq!(waiting.await.expect("task"), Expiry::Closed);
}

/// Serves `/ok`; `/hang`, which never answers; and `/endless`, an answer
/// that never ends. The count is of the requests these two received.
async fn server(limits: Limits) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::get;
    static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let hanging = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (counter, endless_counter) = (hanging.clone(), hanging.clone());
    let router = Router::new()
        .route("/ok", get(|| async { "ok\n" }))
        .route(
            "/hang",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<&'static str>()
            }),
        )
        .route(
            "/endless",
            get(move || async move {
                endless_counter.fetch_add(1, Ordering::SeqCst);
                Body::from_stream(futures_util::stream::repeat_with(|| {
                    Ok::<_, Infallible>(Bytes::from_static(&CHUNK))
                }))
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve(
        listener,
        router,
        None,
        limits,
        std::future::pending(),
    ));
    (addr, hanging)
}

/// What the server sends until it closes the connection (or 10 s pass).
async fn read_to_close(stream: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut text = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut text)).await;
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test]
async fn beyond_the_cap_with_every_connection_busy_new_ones_get_503() {
    use tokio::io::AsyncWriteExt as _;
    let (addr, hanging) = server(limits(2)).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        busy.push(stream);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hanging.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut refused = TcpStream::connect(addr).await.expect("connect");
    let answer = read_to_close(&mut refused).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
            && answer.ends_with("\r\n\r\ntoo many open connections\n"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn beyond_the_cap_the_oldest_silent_connection_makes_room() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (addr, _) = server(limits(2)).await;
    let mut oldest = TcpStream::connect(addr).await.expect("connect");
    let mut newer = TcpStream::connect(addr).await.expect("connect");
    // Accepted in order before the next one arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut scrape = TcpStream::connect(addr).await.expect("connect");
    scrape
        .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut scrape).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert_eq!(
        read_to_close(&mut oldest).await,
        "",
        "closed without a word"
    );
    let still_open =
        tokio::time::timeout(Duration::from_millis(200), newer.read(&mut [0u8; 1])).await;
    assert!(still_open.is_err(), "the newer one stays: {still_open:?}");
}

#[tokio::test]
async fn beyond_the_cap_a_client_not_taking_its_answer_makes_room() {
    use tokio::io::AsyncWriteExt as _;
    let (addr, requests) = server(Limits {
        read_header_timeout: Duration::from_secs(1),
        ..limits(1)
    })
    .await;
    let mut greedy = TcpStream::connect(addr).await.expect("connect");
    greedy
        .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while requests.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Busy, and refusing others, until its answer has been stuck for the
    // read-header timeout; then it makes room.
    let mut refused = 0;
    loop {
        let mut scrape = TcpStream::connect(addr).await.expect("connect");
        let _ = scrape
            .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let answer = read_to_close(&mut scrape).await;
        if answer.starts_with("HTTP/1.1 200 OK\r\n") {
            break;
        }
        refused += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "never got in: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused > 0, "the busy connection was closed at once");
}

#[test]
fn the_cap_leaves_descriptors_for_the_rest_of_the_process() {
    assert_eq!(connection_cap(512, None), 512);
    assert_eq!(connection_cap(512, Some(1_048_576)), 512);
    assert_eq!(connection_cap(512, Some(1024)), 512);
    assert_eq!(connection_cap(512, Some(256)), 128);
    assert_eq!(connection_cap(512, Some(100)), 50);
    assert_eq!(connection_cap(512, Some(1)), 1);
}
