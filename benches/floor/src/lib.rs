//! The benchmark's floor: answers every request `200 {"status":"ok"}`, nothing else.

use spin_sdk::http::{IntoResponse, Request, Response};

#[spin_sdk::http_component]
fn handle(_request: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(r#"{"status":"ok"}"#)
        .build())
}
