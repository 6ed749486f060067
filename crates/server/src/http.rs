//! The HTTP listener's routes: the web app, health, readiness and metrics. Feature routers (signaling
//! now, the admin API later) are merged in by `serve`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use rust_embed::RustEmbed;

/// The browser app, embedded at build time in every profile (`debug-embed`): a debug binary that read
/// `web/` from the path it was built at would serve 404s once run from another clone sharing the target dir.
#[derive(RustEmbed)]
#[folder = "../../web/"]
struct WebAssets;

#[derive(Clone)]
pub struct Ops {
    pub registry: Registry,
    /// False until the media plane is up, and again once shutdown begins.
    pub ready: Arc<AtomicBool>,
}

pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
        .fallback(get(web_asset))
}

async fn readyz(State(ops): State<Ops>) -> Response {
    if ops.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&ops.registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics encoding failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn web_asset(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    // Pages of the single-page app are all index.html; its script reads the path.
    let path = match path {
        "" | "register" | "signin" => "index.html",
        other => other,
    };
    match WebAssets::get(path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_owned();
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The shipped Grafana dashboard may only chart series the server really exports.
    #[test]
    fn dashboard_queries_name_real_metrics() {
        let registry = prometheus::Registry::new();
        // A running server has at least one shard, whose labelled series exist from the start; the
        // per-meeting series exist while a meeting does.
        let shard = convene_media::MediaMetrics::register(&registry)
            .unwrap()
            .shard(0);
        shard.meeting_allocation.changed("1234567890");
        shard.meeting_allocation.set("1234567890", 0, Some(1000));
        // A histogram is queried by its series: `_bucket`, `_sum`, `_count`.
        let exported: BTreeSet<String> = registry
            .gather()
            .iter()
            .flat_map(|f| {
                let name = f.name().to_owned();
                let mut names = vec![name.clone()];
                if f.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                    names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
                }
                names
            })
            .collect();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/grafana/convene-media.json");
        let dashboard = std::fs::read_to_string(path).unwrap();
        let mut used = BTreeSet::new();
        let mut rest = dashboard.as_str();
        while let Some(i) = rest.find("convene_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            used.insert(name);
            rest = &rest[i + 8..];
        }
        used.retain(|n| n != "convene_");
        assert!(used.len() >= 10, "{used:?}");
        let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "dashboard charts metrics nobody exports: {unknown:?}"
        );
    }
}
