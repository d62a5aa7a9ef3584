//! The HTTP side of the metrics (`crate::metrics`): a middleware that records each request
//! under its route template.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{Metrics, UNMATCHED};

/// axum middleware, added with `Router::layer(from_fn_with_state(metrics, track))`. `layer`
/// wraps each route after matching, so the `MatchedPath` extension is set for routed requests.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let response = next.run(request).await;
    metrics.record_request(method.as_str(), &route, response.status().as_u16(), started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn assert_line(text: &str, line: &str) {
        assert!(text.lines().any(|candidate| candidate == line), "no line {line:?} in:\n{text}");
    }

    #[tokio::test]
    async fn the_middleware_records_the_route_template_not_the_path() {
        let metrics = Arc::new(Metrics::new());
        let app = Router::new()
            .route("/v1/things/{id}", get(|| async { "thing" }))
            .layer(axum::middleware::from_fn_with_state(metrics.clone(), track));
        for uri in ["/v1/things/42", "/v1/things/43", "/nowhere/7"] {
            let response = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(response.status().is_success(), uri.starts_with("/v1/things/"));
        }
        let text = metrics.render(&crate::metrics::ScrapeGauges::default());
        assert_line(&text, r#"nexus_http_requests_total{method="GET",route="/v1/things/{id}",status="200"} 2"#);
        assert_line(&text, r#"nexus_http_requests_total{method="GET",route="unmatched",status="404"} 1"#);
        assert!(!text.contains("/v1/things/4") && !text.contains("/nowhere"), "{text}");
    }
}
