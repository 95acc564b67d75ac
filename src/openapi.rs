//! The OpenAPI document's frame (info, tags); paths come from the handlers' `#[utoipa::path]`.

use utoipa::OpenApi;

pub const RECORDS_TAG: &str = "records";
pub const HEALTH_TAG: &str = "health";

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "kinesis-writer",
        description = "HTTP front door to AWS Kinesis Data Streams: the HTTP form of the Python KinesisWriter class. Errors are RFC 9457 problem+json with a stable `code`.",
        license(name = "MIT", identifier = "MIT")
    ),
    components(schemas(crate::error::Problem, crate::error::ErrorClass)),
    tags(
        (name = RECORDS_TAG, description = "Write records to a Kinesis stream"),
        (name = HEALTH_TAG, description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;
