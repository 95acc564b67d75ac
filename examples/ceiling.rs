//! The benchmark's ceiling: a bare axum server that reads the whole body of
//! `POST /streams/{stream}/records` and answers `200 {}`. No parsing, no validation, no Kinesis:
//! the upper bound for any HTTP service on this machine, which `bench/run.sh` compares the
//! service against.
//!
//! ```text
//! cargo run --release --example ceiling -- --port 9100
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

/// Same cap as the service's default body limit, so large bodies are read, not refused.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

async fn records(Path(_stream): Path<String>, body: Bytes) -> impl IntoResponse {
    // The extractor has already read the whole body; touch it so nothing is optimised away.
    std::hint::black_box(body.len());
    ([(header::CONTENT_TYPE, "application/json")], "{}")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port: u16 = 9100;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--port" {
            port = args.next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
                eprintln!("usage: ceiling [--port N]");
                std::process::exit(2)
            });
        }
    }
    let app = Router::new()
        .route("/streams/{stream}/records", post(records))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ceiling listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
