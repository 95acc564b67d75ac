//! Connections as load balancers and pooled clients use them: early refusals leave a kept-alive
//! connection usable, slow headers and idle connections are closed, and the connection cap holds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fake_kinesis::Plan;
use futures_util::StreamExt;
use kinesis_writer::access::key_digest_hex;
use kinesis_writer::config::{AllowedStream, ApiKeySettings, Settings};

use crate::helpers::{eventually, records_url, spawn_app_with, spawn_fake_app};

/// Writes need a key (`k-writer` for `stream`; `k-other` for another stream), only `stream` is
/// allowed, and the body cap is small (16 KiB).
fn guarded(s: &mut Settings, stream: &str) {
    s.streams.allow_all = false;
    s.streams.allowed = vec![AllowedStream::named(stream)];
    s.auth.required = true;
    s.auth.keys = vec![
        ApiKeySettings {
            id: "writer".into(),
            sha256: key_digest_hex("k-writer"),
            streams: vec![stream.to_owned()],
        },
        ApiKeySettings {
            id: "elsewhere".into(),
            sha256: key_digest_hex("k-other"),
            streams: vec!["other".into()],
        },
    ];
    s.limits.max_record_size_bytes = 4096;
    s.limits.max_request_size_bytes = 8192;
    s.limits.body_limit_bytes = 16384;
}

/// Every kind of early answer, on one raw kept-alive connection each: the answer comes, and the
/// next request on the same connection is answered too. (A pooled client hides a silently closed
/// connection by reconnecting when it notices in time; a load balancer answers 502.) Each case is
/// first sent with its body withheld: the answer must come anyway, after the short discard
/// timeout and with `Connection: close`, which proves it was decided without the body.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_leaves_its_connection_ready_for_the_next() {
    let app = spawn_fake_app(|s, stream| {
        guarded(s, stream);
        s.server.discard_body_timeout_ms = 300;
    })
    .await;
    let (address, mine) = (app.address.clone(), app.stream.clone());
    let body = "x".repeat(6000);
    // (method and target, extra headers, expected status)
    let cases: &[(&str, &str, u16)] = &[
        (
            "POST /streams/bad!name/records",
            "x-api-key: k-writer\r\n",
            400,
        ),
        (
            "POST /streams/{mine}/records?record_per_entry=yes",
            "x-api-key: k-writer\r\n",
            400,
        ),
        (
            "POST /streams/{mine}/records",
            "x-api-key: k-writer\r\ncontent-type: application/x-www-form-urlencoded\r\n",
            415,
        ),
        ("POST /streams/{mine}/records", "", 401),
        (
            "POST /streams/{mine}/records",
            "x-api-key: k-other\r\n",
            403,
        ),
        (
            "POST /streams/not-allowed/records",
            "x-api-key: k-writer\r\n",
            404,
        ),
        ("POST /no/such/route", "", 404),
        ("PUT /streams/{mine}/records", "", 405),
        (
            "POST /streams/{mine}/records",
            "x-api-key: k-writer\r\ncontent-encoding: br\r\n",
            415,
        ),
    ];
    let cases: Vec<_> = cases
        .iter()
        .map(|(target, headers, status)| {
            let target = target.replace("{mine}", &mine);
            (target, headers.to_string(), *status)
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        for (target, headers, status) in cases {
            let head = format!(
                "{target} HTTP/1.1\r\nHost: x\r\n{headers}content-length: {}\r\n\r\n",
                body.len()
            );
            // The body never comes: a service that needed it to decide would wait for it until
            // the request timeout (408); the refusal is decided at once, and only the discarding
            // of the body it did not read waits, 300 ms, then gives up on the connection.
            let mut withheld = connect(&address);
            withheld.write_all(head.as_bytes()).unwrap();
            let asked = Instant::now();
            let (got, answer) = read_response(&mut withheld);
            assert_eq!(got, status, "{target} without its body: {answer}");
            assert!(answer.contains("connection: close"), "{target}: {answer}");
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "{target}: answered after {:?}",
                asked.elapsed()
            );

            let mut s = connect(&address);
            // The body follows the head a little later, as from a client that writes them
            // separately: the answer is decided before the body is there.
            s.write_all(head.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(body.as_bytes()).unwrap();
            let (got, head) = read_response(&mut s);
            assert_eq!(got, status, "{target}: {head}");
            assert!(!head.contains("connection: close"), "{target}: {head}");
            s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let (next, _) = read_response(&mut s);
            assert_eq!(
                next, 200,
                "the request after {target} on the same connection"
            );
        }
    })
    .await
    .unwrap();
}

/// Reads one HTTP/1.1 response with a Content-Length body: its status and lowercased head.
fn read_response(s: &mut TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("a response");
        assert_eq!(
            n,
            1,
            "connection closed before a response; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).unwrap();
    (status, head)
}

/// Thousands of requests on a handful of pooled connections, one in ten a write and the rest
/// refusals given before the body is read: none may fail, and every write lands.
#[tokio::test]
async fn early_refusals_keep_pooled_connections_usable() {
    let app = spawn_app_with(guarded).await;
    // Few connections, so each is reused hundreds of times.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()
        .unwrap();
    let filler = "x".repeat(6000);
    const TOTAL: usize = 2000;
    let results = futures_util::stream::iter(0..TOTAL)
        .map(|i| {
            let http = http.clone();
            let app = &app;
            let filler = filler.clone();
            async move {
                let url = app.records_url("partition_key=k");
                let base = http.post(&url).header("x-api-key", "k-writer");
                let (request, expected) = match i % 10 {
                    0 => (
                        base.header("content-type", "text/plain")
                            .body(format!("write-{i}")),
                        200,
                    ),
                    1 => (
                        http.post(records_url(&app.address, "bad!name", ""))
                            .header("x-api-key", "k-writer")
                            .body(filler),
                        400,
                    ),
                    2 => (
                        http.post(app.records_url("record_per_entry=yes"))
                            .header("x-api-key", "k-writer")
                            .body(filler),
                        400,
                    ),
                    3 => (
                        base.header("content-type", "application/x-www-form-urlencoded")
                            .body(filler),
                        415,
                    ),
                    4 => (http.post(&url).body(filler), 401),
                    5 => (
                        http.post(&url).header("x-api-key", "k-other").body(filler),
                        403,
                    ),
                    6 => (
                        http.post(records_url(&app.address, "not-allowed", ""))
                            .header("x-api-key", "k-writer")
                            .body(filler),
                        404,
                    ),
                    // Over the body cap by its Content-Length: refused unread, and too large to
                    // drain, so the answer says `Connection: close`.
                    7 => (base.body("y".repeat(20_000)), 413),
                    // Over the cap with no Content-Length (chunked): refused part-way through.
                    8 => (
                        base.body(reqwest::Body::wrap(http_body_util::StreamBody::new(
                            futures_util::stream::iter((0..5).map(|_| {
                                Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from(
                                    "z".repeat(5000),
                                )))
                            })),
                        ))),
                        413,
                    ),
                    _ => (http.get(format!("{}/no/such/route", app.address)), 404),
                };
                match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let closes = response
                            .headers()
                            .get("connection")
                            .is_some_and(|v| v == "close");
                        let _ = response.bytes().await;
                        Ok((i, status, expected, closes))
                    }
                    Err(e) => Err(format!("request {i}: {e:?}")),
                }
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {TOTAL} requests failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    for (i, status, expected, closes) in results.iter().map(|r| r.clone().unwrap()) {
        assert_eq!(status, expected, "request {i}");
        // Only the body too large to drain closes the connection; everything else keeps it.
        assert_eq!(closes, i % 10 == 7, "Connection: close on request {i}");
    }
    let mut landed: Vec<_> = app
        .landed()
        .await
        .into_iter()
        .map(|l| String::from_utf8(l.data).unwrap())
        .collect();
    landed.sort();
    let mut written: Vec<_> = (0..TOTAL)
        .filter(|i| i % 10 == 0)
        .map(|i| format!("write-{i}"))
        .collect();
    written.sort();
    assert_eq!(landed, written, "every write landed once");
}

/// Load shedding (503 before the body is read) keeps the refused connection usable too.
#[tokio::test]
async fn a_shed_request_keeps_its_connection() {
    let app = spawn_fake_app(|s, _| s.server.max_concurrent_requests = 1).await;
    let fake = app.fake();
    fake.set_plan(Plan::accept_all().with_delay(Duration::from_millis(600)));
    let slow = tokio::spawn({
        let request = app.http.post(app.records_url("")).body("1");
        async move { request.send().await.unwrap().status() }
    });
    // The slow request holds the only slot once it has reached Kinesis.
    eventually(
        "the slow request reaches Kinesis",
        Duration::from_secs(5),
        || async move { (fake.calls() > 0).then_some(()) },
    )
    .await;
    let filler = "x".repeat(8000);
    let shed = app.post("", &[], filler).await;
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().get("connection").is_none());
    let _ = shed.bytes().await;
    // The slow request holds the other connection: this one reuses the shed one.
    let next = app
        .http
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .expect("the shed request's connection is still usable");
    assert_eq!(next.status(), 200);
    assert_eq!(slow.await.unwrap(), 200);
}

/// How long until the server closes `stream` (reads until EOF or reset).
fn time_until_closed(mut stream: TcpStream, started: Instant) -> Duration {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

fn connect(address: &str) -> TcpStream {
    TcpStream::connect(address.trim_start_matches("http://")).unwrap()
}

/// Idle connections close after `idle_timeout_ms`, half-sent headers after
/// `header_read_timeout_ms`, and a kept-alive connection between requests is idle, not slow.
#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_idle_connections_are_closed() {
    let app = spawn_fake_app(|s, _| {
        s.server.header_read_timeout_ms = 400;
        s.server.idle_timeout_ms = 3000;
    })
    .await;
    let address = app.address.clone();
    let closed = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let idle: Vec<_> = (0..200).map(|_| connect(&address)).collect();
        let half: Vec<_> = (0..50)
            .map(|_| {
                let mut s = connect(&address);
                s.write_all(b"POST /streams/s/records HTTP/1.1\r\nHost: x\r\nContent-Len")
                    .unwrap();
                s
            })
            .collect();
        let mut kept = connect(&address);
        kept.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = [0u8; 1024];
        let n = kept.read(&mut answer).unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
        let after_answer = Instant::now();
        let threads: Vec<_> = idle
            .into_iter()
            .map(|s| ("idle", s, started))
            .chain(half.into_iter().map(|s| ("half", s, started)))
            .chain(std::iter::once(("kept", kept, after_answer)))
            .map(|(kind, s, t0)| std::thread::spawn(move || (kind, time_until_closed(s, t0))))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (kind, after) in closed {
        let (at_least, at_most) = match kind {
            // Generous upper bounds: the emulator tests beside this one load both cores.
            "half" => (300, 2500),
            _ => (2900, 7000),
        };
        assert!(
            after >= Duration::from_millis(at_least) && after <= Duration::from_millis(at_most),
            "{kind} connection closed after {after:?}, expected {at_least}..{at_most} ms"
        );
    }
}

/// Past `max_connections`, while every open connection is busy, a new connection is not served
/// until one of them finishes (its connection, then idle, is closed to make room).
#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_holds_new_connections_while_all_are_busy() {
    let app = spawn_fake_app(|s, _| s.server.max_connections = 4).await;
    app.fake()
        .set_plan(Plan::accept_all().with_delay(Duration::from_millis(1500)));
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || {
        // Four writes the fake answers only after 1.5 s: all four connections busy.
        let busy: Vec<_> = (0..4)
            .map(|_| {
                let mut s = connect(&address);
                s.write_all(
                    b"POST /streams/s/records HTTP/1.1\r\nHost: x\r\n\
                      Content-Type: application/json\r\nContent-Length: 1\r\n\r\n1",
                )
                .unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut fifth = connect(&address);
        fifth
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        fifth
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut answer = [0u8; 1024];
        assert!(
            fifth.read(&mut answer).is_err(),
            "the fifth connection was served while four were busy"
        );
        fifth
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = fifth.read(&mut answer).expect("served once one was done");
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
        for mut s in busy {
            assert_eq!(read_response(&mut s).0, 200, "the busy ones were answered");
        }
    })
    .await
    .unwrap();
}

/// Issue #22 item 3: at `max_connections` with every connection idle (kept alive), a new client
/// is served at once, not after the idle timeout, and the connection idle longest is the one
/// closed to make room.
#[tokio::test(flavor = "multi_thread")]
async fn at_the_cap_the_longest_idle_connection_is_closed_to_admit_a_new_one() {
    let app = spawn_fake_app(|s, _| {
        s.server.max_connections = 4;
        s.server.idle_timeout_ms = 60_000;
    })
    .await;
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || {
        let mut open: Vec<_> = (0..4)
            .map(|_| {
                let mut s = connect(&address);
                s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                assert_eq!(read_response(&mut s).0, 200);
                // Distinct idle-since times, oldest first.
                std::thread::sleep(Duration::from_millis(20));
                s
            })
            .collect();
        let started = Instant::now();
        let mut fifth = connect(&address);
        fifth
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut fifth).0, 200);
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(2), "served after {waited:?}");

        let oldest = open.remove(0);
        let closed_after = time_until_closed(oldest, started);
        assert!(
            closed_after < Duration::from_secs(2),
            "the oldest closed after {closed_after:?}"
        );
        for mut s in open {
            s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut s).0, 200, "the younger ones stay open");
        }
    })
    .await
    .unwrap();
}

/// Issue #22 item 5: an HTTP/2 (h2c) connection kept alive with PINGs and no request was dropped
/// at the header timeout, without GOAWAY, as if the PINGs were slow headers. It is idle: it is
/// closed at the idle timeout, with a GOAWAY frame. The client here answers the server's SETTINGS
/// and PINGs, as an HTTP/2 client must.
#[tokio::test(flavor = "multi_thread")]
async fn an_h2c_connection_kept_alive_with_pings_closes_at_the_idle_timeout_with_goaway() {
    let app = spawn_fake_app(|s, _| {
        s.server.header_read_timeout_ms = 400;
        s.server.idle_timeout_ms = 2500;
    })
    .await;
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut s = connect(&address);
        let mut reader = s.try_clone().unwrap();
        let mut replies = s.try_clone().unwrap();
        // Reads the server's frames until it closes: (type, when) each; acknowledges SETTINGS
        // and PINGs.
        let received = std::thread::spawn(move || {
            reader
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut frames = Vec::new();
            let mut head = [0u8; 9];
            while reader.read_exact(&mut head).is_ok() {
                let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                let mut payload = vec![0u8; len];
                if reader.read_exact(&mut payload).is_err() {
                    break;
                }
                let (kind, ack) = (head[3], head[4] & 1 == 1);
                frames.push((kind, started.elapsed()));
                let reply = match (kind, ack) {
                    (4, false) => vec![0, 0, 0, 4, 1, 0, 0, 0, 0],
                    (6, false) => [&[0, 0, 8, 6, 1, 0, 0, 0, 0][..], &payload].concat(),
                    _ => continue,
                };
                let _ = replies.write_all(&reply);
            }
            (frames, started.elapsed())
        });
        // The preface, an empty SETTINGS frame, then a PING every 200 ms for 1.2 s.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .unwrap();
        for i in 0..6u8 {
            std::thread::sleep(Duration::from_millis(200));
            let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, i, 0, 0, 0, 0, 0, 0, 0];
            if s.write_all(&ping).is_err() {
                break;
            }
        }
        let (frames, closed_after) = received.join().unwrap();
        let goaway = frames.iter().find(|(kind, _)| *kind == 7).map(|(_, at)| *at);
        let goaway = goaway.unwrap_or_else(|| panic!("no GOAWAY; frames {frames:?}"));
        assert!(
            goaway >= Duration::from_millis(2300) && closed_after < Duration::from_secs(7),
            "GOAWAY after {goaway:?}, closed after {closed_after:?}: not at the idle timeout (2.5 s)"
        );
        let pongs = frames.iter().filter(|(kind, _)| *kind == 6).count();
        assert!(pongs >= 6, "every PING answered: {frames:?}");
    })
    .await
    .unwrap();
}

/// The HTTP/2 check must not open a hole for slow headers: an HTTP/1.1 request trickled a byte at
/// a time (`P`, then `O`, …) is still cut off at the header timeout.
#[tokio::test(flavor = "multi_thread")]
async fn headers_trickled_a_byte_at_a_time_are_still_cut_off() {
    let app = spawn_fake_app(|s, _| s.server.header_read_timeout_ms = 400).await;
    let address = app.address.clone();
    let closed_after = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut s = connect(&address);
        let closer = s.try_clone().unwrap();
        let watch = std::thread::spawn(move || time_until_closed(closer, started));
        for byte in b"POST /streams/s/records HTTP/1.1\r\n" {
            std::thread::sleep(Duration::from_millis(150));
            if s.write_all(&[*byte]).is_err() {
                break;
            }
        }
        watch.join().unwrap()
    })
    .await
    .unwrap();
    assert!(
        closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?}, not at the 400 ms header timeout"
    );
}
