//! In-process S3-protocol server (s3s + s3s-fs), so the storage suite talks real S3 HTTP
//! (SigV4, conditional puts, listings) without Docker or network access.
//!
//! s3s-fs checks `If-None-Match: *` and then writes, which are two steps: two concurrent
//! conditional creates of one key can both succeed. Real S3 (and MinIO) decide atomically,
//! so this server serialises conditional PUTs to give the same guarantee.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use sobot_sync::io::store::S3Options;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Mutex;

pub const ACCESS_KEY: &str = "test-key";
pub const SECRET_KEY: &str = "test-secret";
pub const BUCKET: &str = "warehouse";
pub const REGION: &str = "us-east-1";

/// A running S3 server over a temporary directory; stops (and deletes its data) on drop.
pub struct S3Server {
    endpoint: String,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
    parquet_puts: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Shared {
    service: S3Service,
    /// Held across a whole conditional PUT (check and write); see the module docs.
    create_lock: Arc<Mutex<()>>,
    /// PUTs of `.parquet` objects served, for tests that a run wrote nothing.
    parquet_puts: Arc<AtomicU64>,
}

impl S3Server {
    /// Binds 127.0.0.1 on a free port and serves the bucket [`BUCKET`].
    pub async fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("temporary directory for the S3 server");
        std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket directory");
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs over the temporary directory");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let shared = Shared {
            service: builder.build(),
            create_lock: Arc::new(Mutex::new(())),
            parquet_puts: Arc::new(AtomicU64::new(0)),
        };
        let parquet_puts = shared.parquet_puts.clone();
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("S3 test server stopped: {e}");
            }
        });
        S3Server {
            endpoint: format!("http://{addr}"),
            dir,
            task,
            parquet_puts,
        }
    }

    /// How many PUTs of `.parquet` objects this server has received so far.
    pub fn parquet_puts(&self) -> u64 {
        self.parquet_puts.load(Ordering::SeqCst)
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Options that reach this server with its credentials.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint()),
            access_key_id: Some(ACCESS_KEY.to_string()),
            secret_access_key: Some(sobot_sync::core::secret::Secret::new(SECRET_KEY)),
            region: Some(REGION.to_string()),
            allow_http: true,
        }
    }

    /// The server's root directory; objects live under `<root>/<bucket>/<key>`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let conditional = req.method() == Method::PUT
        && (req.headers().contains_key(header::IF_NONE_MATCH)
            || req.headers().contains_key(header::IF_MATCH));
    if req.method() == Method::PUT && req.uri().path().ends_with(".parquet") {
        shared.parquet_puts.fetch_add(1, Ordering::SeqCst);
    }
    let _guard = if conditional {
        Some(shared.create_lock.lock().await)
    } else {
        None
    };
    let req = req.map(s3s::Body::http_body_unsync);
    match shared.service.call(req).await {
        Ok(resp) => resp.map(axum::body::Body::new),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}")).into_response(),
    }
}
