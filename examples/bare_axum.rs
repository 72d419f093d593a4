//! Benchmark baseline: a bare axum server answering the same route shape with a constant
//! record, so `scripts/bench` can report the bridge's rate as a ratio of plain axum's.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let app = Router::new().route(
        "/v1/inventory/{sku}/{location}",
        get(|| async {
            axum::Json(
                serde_json::json!({"sku":"A1001","location":"S01","on_hand":"51.000",
                "reserved":"0.000","updated_at":"2024-11-01T07:00:00+01:00"}),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
