//! The console's files under `/pkg/`: the stylesheet, compiled in, and the islands bundle that
//! `scripts/build-console` writes (`console.js`, `console_bg.wasm`), read from a directory when
//! it holds one. Pages ask [`ConsoleBundle`] whether to load the bundle at all.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::UNIX_EPOCH;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::sha256_hex;
use crate::error::ApiError;

/// The bundle's files and their content types, as `scripts/build-console` names them.
const BUNDLE_FILES: [(&str, &str); 2] = [
    ("console.js", "text/javascript; charset=utf-8"),
    ("console_bg.wasm", "application/wasm"),
];

// The names are fixed, not content-hashed, so browsers must revalidate: `no-cache` with an ETag
// costs a 304 per page load instead of serving a stale bundle after a rebuild or an upgrade.
const CACHE_CONTROL: &str = "no-cache";

/// Where the islands bundle is served from, if anywhere. Decided once when the server starts;
/// handlers take it as an extractor (it is never missing: without the server's extension it
/// says "no bundle"), e.g. to pass [`ConsoleBundle::served`] as a page's `bundle`.
#[derive(Debug, Clone, Default)]
pub struct ConsoleBundle {
    dir: Option<Arc<Path>>,
}

impl ConsoleBundle {
    /// Serves the bundle from `dir` when it holds both files, and logs which it will be.
    pub fn locate(dir: Option<&Path>) -> ConsoleBundle {
        let Some(dir) = dir else {
            tracing::info!(
                "console islands bundle: none built or configured; pages are served without \
                 it (scripts/build-console builds it)"
            );
            return ConsoleBundle::default();
        };
        let missing: Vec<&str> = BUNDLE_FILES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !dir.join(name).is_file())
            .collect();
        if missing.is_empty() {
            tracing::info!(dir = %dir.display(), "console islands bundle: served");
            ConsoleBundle {
                dir: Some(dir.into()),
            }
        } else {
            tracing::warn!(
                dir = %dir.display(),
                missing = %missing.join(", "),
                "console islands bundle: not found; pages are served without it \
                 (scripts/build-console builds it)"
            );
            ConsoleBundle::default()
        }
    }

    /// Whether pages load the bundle (`/pkg/console.js`); the `bundle` of a console page.
    pub fn served(&self) -> bool {
        self.dir.is_some()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConsoleBundle {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ConsoleBundle>()
            .cloned()
            .unwrap_or_default())
    }
}

/// `console/dist/pkg` of the source tree this binary was built from, where
/// `scripts/build-console` writes, when that directory exists: the default bundle directory of a
/// binary run from a checkout.
pub fn source_tree_dir() -> Option<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../console/dist/pkg"));
    dir.canonicalize().ok().filter(|dir| dir.is_dir())
}

/// `/pkg/console.css`, `/pkg/console.js` and `/pkg/console_bg.wasm`. The bundle's files are
/// read from disk on each request, so a rebuilt bundle is picked up without a restart.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let [(js, js_type), (wasm, wasm_type)] = BUNDLE_FILES;
    Router::new()
        .route("/pkg/console.css", get(stylesheet))
        .route(
            &format!("/pkg/{js}"),
            get(move |bundle: ConsoleBundle, headers: HeaderMap| {
                bundle_file(bundle, headers, js, js_type)
            }),
        )
        .route(
            &format!("/pkg/{wasm}"),
            get(move |bundle: ConsoleBundle, headers: HeaderMap| {
                bundle_file(bundle, headers, wasm, wasm_type)
            }),
        )
}

static STYLESHEET_ETAG: LazyLock<String> = LazyLock::new(|| {
    let hash = sha256_hex(tollgate_console::shell::STYLESHEET);
    format!("\"{}\"", &hash[..16])
});

async fn stylesheet(headers: HeaderMap) -> Response {
    respond(
        &headers,
        &STYLESHEET_ETAG,
        "text/css; charset=utf-8",
        || async { Ok(tollgate_console::shell::STYLESHEET.as_bytes().to_vec()) },
    )
    .await
}

async fn bundle_file(
    bundle: ConsoleBundle,
    headers: HeaderMap,
    name: &'static str,
    content_type: &'static str,
) -> Response {
    let Some(dir) = bundle.dir else {
        return ApiError::NotFound.into_response();
    };
    let path = dir.join(name);
    let Ok(meta) = tokio::fs::metadata(&path).await else {
        return ApiError::NotFound.into_response();
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), modified);
    respond(&headers, &etag, content_type, || tokio::fs::read(&path)).await
}

/// 304 when the client holds `etag` already, else the body `read` returns.
async fn respond<F, Fut>(headers: &HeaderMap, etag: &str, content_type: &str, read: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<Vec<u8>>>,
{
    let etag_header = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""));
    let cached = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim().trim_start_matches("W/") == etag);
    let validators = [
        (header::ETAG, etag_header),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, validators).into_response();
    }
    match read().await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            )],
            validators,
            body,
        )
            .into_response(),
        // Removed between the metadata and the read, e.g. by a rebuild swapping it.
        Err(_) => ApiError::NotFound.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app(bundle: ConsoleBundle) -> Router {
        routes().layer(axum::Extension(bundle))
    }

    async fn get(app: &Router, path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        app.clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    #[tokio::test]
    async fn stylesheet_is_served_without_a_bundle_and_revalidates() {
        let app = app(ConsoleBundle::locate(None));
        let resp = get(&app, "/pkg/console.css", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = resp.headers()[header::ETAG]
            .to_str()
            .expect("etag")
            .to_string();
        let resp = get(&app, "/pkg/console.css", Some(&etag)).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            get(&app, "/pkg/console.js", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn bundle_is_served_from_its_directory_only_when_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("console.js"), "export default 1;").expect("write");
        assert!(!ConsoleBundle::locate(Some(dir.path())).served());

        std::fs::write(dir.path().join("console_bg.wasm"), b"\0asm").expect("write");
        let bundle = ConsoleBundle::locate(Some(dir.path()));
        assert!(bundle.served());
        let app = app(bundle);
        let resp = get(&app, "/pkg/console_bg.wasm", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/wasm");
        let etag = resp.headers()[header::ETAG]
            .to_str()
            .expect("etag")
            .to_string();
        assert_eq!(
            get(&app, "/pkg/console_bg.wasm", Some(&etag))
                .await
                .status(),
            StatusCode::NOT_MODIFIED
        );
        let resp = get(&app, "/pkg/console.js", None).await;
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let body = axum::body::to_bytes(resp.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(&body[..], b"export default 1;");
    }

    #[tokio::test]
    async fn handlers_without_the_extension_see_no_bundle() {
        let resp = get(&routes(), "/pkg/console.js", None).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
