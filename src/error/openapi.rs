//! The problem answers of each route in the OpenAPI document, drawn from the error table
//! (`problems::ALL`), so the document cannot drift from what the service answers.

use super::problems::{self, ProblemType};

/// A route's problem answers for its OpenAPI `responses`, drawn from the table: one response per
/// status, naming the codes that answer with it, so the document cannot drift from the table.
fn problem_responses(
    codes: &[&str],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let mut by_status: std::collections::BTreeMap<u16, Vec<&ProblemType>> = Default::default();
    for kind in problems::ALL.iter().filter(|k| codes.contains(&k.code)) {
        by_status
            .entry(kind.status.as_u16())
            .or_default()
            .push(kind);
    }
    by_status
        .into_iter()
        .map(|(status, kinds)| {
            let description = kinds
                .iter()
                .map(|k| {
                    let retry = if k.retry_after { " (Retry-After)" } else { "" };
                    format!("`{}`: {}{retry}", k.code, k.when)
                })
                .collect::<Vec<_>>()
                .join("; ");
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", content)
                .build();
            (status.to_string(), response.into())
        })
        .collect()
}

/// The problem answers of `POST /streams/{stream}/records`.
pub(crate) struct WriteProblems;

impl utoipa::IntoResponses for WriteProblems {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        let codes: Vec<&str> = problems::ALL
            .iter()
            .map(|k| k.code)
            // Not answers of this route: readiness, unknown routes, other layers' statuses.
            .filter(|c| !matches!(*c, "not_ready" | "not_found" | "http_error"))
            .collect();
        problem_responses(&codes)
    }
}

/// The problem answer of `GET /health/ready`.
pub(crate) struct ReadyProblems;

impl utoipa::IntoResponses for ReadyProblems {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problem_responses(&["not_ready"])
    }
}

/// The problem answers of `GET /metrics`.
pub(crate) struct MetricsProblems;

impl utoipa::IntoResponses for MetricsProblems {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problem_responses(&["unauthorized", "not_found"])
    }
}
