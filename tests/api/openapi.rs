//! The OpenAPI document: served from the code, and `openapi.yaml` at the root is the same
//! document (regenerate it with `make openapi`).

use crate::helpers::spawn_app;

#[tokio::test]
async fn openapi_yaml_matches_the_document_the_code_generates() {
    let generated = kinesis_writer::routes::openapi().to_yaml().unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml exists at the repository root");
    assert!(
        generated == committed,
        "openapi.yaml has drifted from the code: run `make openapi` and commit the result"
    );
}

#[tokio::test]
async fn the_served_document_is_openapi_3_1_with_every_route() {
    let app = spawn_app().await;

    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();

    assert_eq!(
        doc,
        serde_json::to_value(kinesis_writer::routes::openapi()).unwrap()
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/streams/{stream}/records", "/health/live", "/health/ready"] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
}
