//! The HTTP/JSON interface (axum): the public contract (`/health`, `/kv`,
//! `/events`, `/log`) and the internal replication routes.

use crate::api::*;
use crate::node::{Node, Refusal};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Largest value a client may write.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Build the router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/kv/{key}", get(read).put(write))
        .route("/events", get(events))
        .route("/log", get(log))
        .route("/internal/append", post(append))
        .route("/internal/sync", post(sync))
        .route("/internal/confirm", post(confirm))
        .fallback(|uri: Uri| async move {
            error(
                StatusCode::NOT_FOUND,
                format!("no route {uri}; try /health, /kv/KEY, /events, /log"),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(node)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: msg.into(),
            leader: None,
        }),
    )
        .into_response()
}

/// Parse a JSON body ourselves so malformed input gets a JSON error naming
/// what is wrong.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("malformed JSON body: {e}"),
        ))
    })
}

fn refusal(r: Refusal, uri: &Uri) -> Response {
    match r {
        Refusal::NotLeader(Some(leader)) => {
            let location = format!("http://{leader}{}", uri.path());
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
                Json(ErrorBody {
                    error: "not the leader".into(),
                    leader: Some(leader),
                }),
            )
                .into_response()
        }
        Refusal::NotLeader(None) => error(StatusCode::SERVICE_UNAVAILABLE, "no leader known"),
        Refusal::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        Refusal::Precondition(current) => (
            StatusCode::PRECONDITION_FAILED,
            Json(serde_json::json!({"ok": false, "value": current})),
        )
            .into_response(),
        // 500 with "unknown": the client must treat the write as indeterminate.
        Refusal::Unknown(m) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("outcome unknown: {m}"),
        ),
        Refusal::Io(m) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storage error: {m}"),
        ),
    }
}

async fn health(State(node): State<Arc<Node>>) -> Json<Health> {
    Json(node.health().await)
}

async fn read(State(node): State<Arc<Node>>, Path(key): Path<String>, uri: Uri) -> Response {
    match node.read(&key).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("key `{key}` not found")),
        Err(r) => refusal(r, &uri),
    }
}

async fn write(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let req: WriteRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if req.value.len() > MAX_VALUE_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                req.value.len()
            ),
        );
    }
    if key.is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty key");
    }
    match node.write(key, req.value, req.expected).await {
        Ok(ok) => Json(ok).into_response(),
        Err(r) => refusal(r, &uri),
    }
}

#[derive(serde::Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    10_000
}

async fn events(State(node): State<Arc<Node>>, Query(q): Query<Since>) -> Json<EventsPage> {
    let (events, next) = node.events.page(q.since, q.limit);
    Json(EventsPage { events, next })
}

#[derive(serde::Deserialize)]
struct From {
    #[serde(default)]
    from: u64,
    #[serde(default = "default_log_limit")]
    limit: usize,
}

fn default_log_limit() -> usize {
    1_000_000
}

async fn log(State(node): State<Arc<Node>>, Query(q): Query<From>) -> Json<LogPage> {
    Json(node.committed(q.from, q.limit).await)
}

async fn append(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(req) => match node.handle_append(req).await {
            Ok(r) => Json(r).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        Err(resp) => *resp,
    }
}

async fn sync(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(req) => match node.handle_sync(req).await {
            Ok(r) => Json(r).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        Err(resp) => *resp,
    }
}

async fn confirm(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(req) => Json(node.handle_confirm(req).await).into_response(),
        Err(resp) => *resp,
    }
}
