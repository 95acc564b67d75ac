//! Settings from the process environment: the `APP_<SECTION>__<KEY>` scalars, one variable per
//! list setting, and the precedence of the standard AWS variables over what a config file ships.
//!
//! Everything reads one snapshot of the variables ([`Env`]), so tests can pass their own map
//! instead of changing the process environment that parallel tests share.

use std::collections::HashMap;

use anyhow::{Context, bail};

use super::Settings;

/// A list setting that one environment variable sets whole
/// (docs/configuration.md#lists-from-the-environment), so a container needs no mounted file.
struct ListVar {
    var: &'static str,
    key: &'static str,
    /// The items may be bare names, so a comma list is accepted besides JSON.
    names: bool,
}

const LIST_VARS: &[ListVar] = &[
    ListVar {
        var: "APP_STREAMS__ALLOWED",
        key: "streams.allowed",
        names: true,
    },
    ListVar {
        var: "APP_LIMITS__STREAMS",
        key: "limits.streams",
        names: false,
    },
    ListVar {
        var: "APP_DELIVERY__STREAMS",
        key: "delivery.streams",
        names: false,
    },
    ListVar {
        var: "APP_COALESCE__STREAMS",
        key: "coalesce.streams",
        names: true,
    },
    ListVar {
        var: "APP_DEV__CREATE_STREAMS",
        key: "dev.create_streams",
        names: true,
    },
    ListVar {
        var: "APP_AGGREGATION__STREAMS",
        key: "aggregation.streams",
        names: true,
    },
    ListVar {
        var: "APP_SPOOL__STREAMS",
        key: "spool.streams",
        names: true,
    },
    ListVar {
        var: "APP_IDEMPOTENCY__REQUIRED_STREAMS",
        key: "idempotency.required_streams",
        names: true,
    },
    ListVar {
        var: "APP_AUTH__KEYS",
        key: "auth.keys",
        names: false,
    },
];

/// A setting that the standard AWS variables override when a config file ships it
/// (docs/configuration.md#aws-variables: a variable set in the environment always wins, `local`
/// included), unless the service's own variable is set too: that one beats both.
struct AwsOverride {
    own: &'static str,
    standard: &'static [&'static str],
    /// Drops the file's value, so the AWS chain reads the standard variable.
    clear: fn(&mut Settings),
}

const AWS_OVERRIDES: &[AwsOverride] = &[
    AwsOverride {
        own: "APP_KINESIS__ENDPOINT_URL",
        standard: &["AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL"],
        clear: |s| s.kinesis.endpoint_url.clear(),
    },
    AwsOverride {
        own: "APP_KINESIS__REGION",
        standard: &["AWS_REGION", "AWS_DEFAULT_REGION"],
        clear: |s| s.kinesis.region.clear(),
    },
];

/// A snapshot of the environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process's variables (those that are not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    /// A given set of variables (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// A variable that is set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The `config` source for the scalar `APP_*` variables. List variables are left out: the
    /// crate would read them as strings where a list is expected.
    pub(super) fn scalars(&self) -> config::Environment {
        let scalars = self
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("APP_") && !LIST_VARS.iter().any(|l| l.var == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        config::Environment::with_prefix("APP")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(scalars))
    }

    /// `(key, value)` overrides for the list variables that are set.
    pub(super) fn lists(&self) -> anyhow::Result<Vec<(&'static str, config::Value)>> {
        let mut out = Vec::new();
        for list in LIST_VARS {
            let Some(raw) = self.get(list.var) else {
                continue;
            };
            let raw = raw.trim();
            let items = if raw.starts_with('[') {
                serde_json::from_str::<serde_json::Value>(raw)
                    .with_context(|| format!("{} is not valid JSON", list.var))?
            } else if list.names {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| serde_json::Value::String(s.to_owned()))
                    .collect()
            } else {
                bail!(
                    "{} must be a JSON list (its items are objects), e.g. '[{{\"name\": ...}}]'",
                    list.var
                );
            };
            out.push((list.key, to_config_value(items)));
        }
        Ok(out)
    }

    /// What a variable set in the environment means beyond its own key: the standard AWS
    /// variables clear the config files' endpoint and region (unless the service's own variable
    /// is set too), so the AWS chain reads them; and an allowlist given in `APP_STREAMS__ALLOWED`
    /// takes effect even where a profile ships `streams.allow_all: true` (config/local.yaml), unless
    /// `APP_STREAMS__ALLOW_ALL` is set too: someone who lists streams means those streams.
    pub(super) fn apply_precedence(&self, settings: &mut Settings) {
        for o in AWS_OVERRIDES {
            if self.get(o.own).is_none() && o.standard.iter().any(|v| self.get(v).is_some()) {
                (o.clear)(settings);
            }
        }
        if self.get("APP_STREAMS__ALLOWED").is_some()
            && self.get("APP_STREAMS__ALLOW_ALL").is_none()
        {
            settings.streams.allow_all = false;
        }
    }
}

fn to_config_value(value: serde_json::Value) -> config::Value {
    use serde_json::Value as J;
    match value {
        J::Null => config::Value::from(None::<String>),
        J::Bool(b) => b.into(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or_default().into(),
        },
        J::String(s) => s.into(),
        J::Array(items) => items
            .into_iter()
            .map(to_config_value)
            .collect::<Vec<_>>()
            .into(),
        J::Object(fields) => fields
            .into_iter()
            .map(|(k, v)| (k, to_config_value(v)))
            .collect::<config::Map<String, config::Value>>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
        Settings::load_with_env(&dir, &Env::from_pairs(vars.iter().copied()))
    }

    #[test]
    fn lists_take_names_or_json() {
        let s = load(&[
            ("APP_STREAMS__ALLOWED", " clickstream, orders ,"),
            ("APP_COALESCE__STREAMS", "clickstream"),
            ("APP_DEV__CREATE_STREAMS", "a:3,b"),
            (
                "APP_LIMITS__STREAMS",
                r#"[{"name": "big", "max_record_size_bytes": 2000000}]"#,
            ),
            (
                "APP_DELIVERY__STREAMS",
                r#"[{"name": "big", "max_attempts": 9}]"#,
            ),
        ])
        .unwrap();
        let allowed: Vec<_> = s.streams.allowed.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(allowed, ["clickstream", "orders"]);
        let dev: Vec<_> = s
            .dev
            .create_streams
            .iter()
            .map(|d| (d.name.as_str(), d.shards))
            .collect();
        assert_eq!(dev, [("a", 3), ("b", 1)]);
        assert_eq!(s.limits_for("big").max_record_size, 2_000_000);
        assert_eq!(s.retry_policy_for("big").max_attempts, 9);
        assert_eq!(s.coalesce.streams.len(), 1);

        let s = load(&[(
            "APP_STREAMS__ALLOWED",
            r#"[{"name": "x", "arn": "arn:aws:kinesis:eu-west-1:1:stream/x", "region": "eu-west-1"}]"#,
        )])
        .unwrap();
        assert_eq!(
            s.streams.allowed[0].set.region.as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn production_is_closed_metrics_included() {
        let production = load(&[("APP_ENVIRONMENT", "production")]).unwrap();
        assert!(production.auth.required && !production.streams.allow_all);
        // /metrics names every stream written: an unauthenticated caller must not learn them.
        assert!(
            production.metrics.require_auth,
            "metrics need a key in production"
        );
        let local = load(&[]).unwrap();
        assert!(
            !local.metrics.require_auth,
            "open locally, for curl and make run"
        );
    }

    #[test]
    fn a_bad_list_names_its_variable() {
        for (var, value) in [
            ("APP_STREAMS__ALLOWED", "[not json"),
            ("APP_LIMITS__STREAMS", "big"),
            ("APP_DEV__CREATE_STREAMS", "a:many"),
        ] {
            let err = format!("{:#}", load(&[(var, value)]).unwrap_err());
            let named = err.contains(var) || err.contains("shards must be a number");
            assert!(named, "{var}={value}: {err}");
        }
    }

    #[test]
    fn standard_aws_variables_beat_the_files_but_not_the_services_own() {
        // config/local.yaml ships an endpoint and a region.
        let files = load(&[]).unwrap();
        assert_eq!(files.kinesis.endpoint_url, "http://127.0.0.1:4568");
        assert_eq!(files.kinesis.region, "us-east-1");

        let aws = load(&[
            ("AWS_ENDPOINT_URL_KINESIS", "http://localhost:4566"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(aws.kinesis.endpoint_url, "", "left to the AWS chain");
        assert_eq!(aws.kinesis.region, "");

        let own = load(&[
            ("AWS_ENDPOINT_URL", "http://localhost:4566"),
            ("APP_KINESIS__ENDPOINT_URL", "http://127.0.0.1:9999"),
        ])
        .unwrap();
        assert_eq!(own.kinesis.endpoint_url, "http://127.0.0.1:9999");
    }

    #[test]
    fn a_keys_streams_may_be_one_string() {
        let digest = "22a60ff8f8f1fd8e4b0b6a8ab1c4e2b6e2c2d0c1ddd8c7c1b2e3f4a5b6c7d8e9";
        let keys = format!(
            r#"[{{"id": "all", "sha256": "{digest}", "streams": "*"}},
                {{"id": "two", "sha256": "{digest}", "streams": "a, b"}},
                {{"id": "list", "sha256": "{digest}", "streams": ["c"]}}]"#
        );
        let s = load(&[("APP_AUTH__KEYS", keys.as_str())]).unwrap();
        let streams: Vec<Vec<String>> = s.auth.keys.into_iter().map(|k| k.streams).collect();
        assert_eq!(streams, [vec!["*"], vec!["a", "b"], vec!["c"]]);
    }

    #[test]
    fn an_allowlist_from_the_environment_beats_the_local_profiles_allow_all() {
        // config/local.yaml ships allow_all: true.
        assert!(load(&[]).unwrap().streams.allow_all);
        let listed = load(&[("APP_STREAMS__ALLOWED", "example-stream")]).unwrap();
        assert!(
            !listed.streams.allow_all,
            "the listed streams, and only them"
        );
        let both = load(&[
            ("APP_STREAMS__ALLOWED", "example-stream"),
            ("APP_STREAMS__ALLOW_ALL", "true"),
        ])
        .unwrap();
        assert!(
            both.streams.allow_all,
            "said explicitly, allow_all still wins"
        );
    }
}
