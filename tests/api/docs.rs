//! The tables of `docs/` that restate something the code defines are compared with it value for
//! value, so the documentation cannot drift: the error codes of `docs/api.md` against the problem
//! table (`kinesis_writer::error::problems::ALL`), its write parameters against the OpenAPI
//! document the code generates, the settings of `docs/configuration.md` against
//! `config/base.yaml`, and the metrics of `docs/operations.md` against the names `src/metrics.rs`
//! exports. No emulator and no service: files and the generated document only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kinesis_writer::error::problems;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The rows of the first Markdown table after the line `heading` in `file`, keyed by the cell in
/// column `key`; each row is its cells with the surrounding spaces and backticks taken off (the
/// header and its `|---|` line are skipped).
fn keyed_table(file: &str, heading: &str, key: usize) -> BTreeMap<String, Vec<String>> {
    let doc = repo_file(file);
    let mut lines = doc
        .lines()
        .skip_while(|l| l.trim() != heading)
        .skip(1)
        .skip_while(|l| !l.starts_with('|'));
    let _header = lines
        .next()
        .unwrap_or_else(|| panic!("{file}: no table after {heading:?}"));
    let mut rows = BTreeMap::new();
    for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').to_owned())
            .collect();
        let previous = rows.insert(cells[key].clone(), cells);
        assert!(
            previous.is_none(),
            "{file}, {heading:?}: a row appears twice"
        );
    }
    assert!(
        !rows.is_empty(),
        "{file}: the table after {heading:?} is empty"
    );
    rows
}

/// Keys in one list and not the other, for a message that says what to fix.
fn differences<'a, V, W>(
    docs: &'a BTreeMap<String, V>,
    code: &'a BTreeMap<String, W>,
) -> (Vec<&'a String>, Vec<&'a String>) {
    let docs: BTreeSet<&String> = docs.keys().collect();
    let code: BTreeSet<&String> = code.keys().collect();
    (
        code.difference(&docs).copied().collect(),
        docs.difference(&code).copied().collect(),
    )
}

#[test]
fn the_error_code_table_of_docs_api_md_is_the_codes_problem_table() {
    let documented = keyed_table("docs/api.md", "### Error codes", 1);
    // `http_error` has no status of its own (it keeps whatever a layer answered): the page says
    // so below the table instead of giving it a row.
    let table: BTreeMap<String, _> = problems::ALL
        .iter()
        .filter(|p| p.code != "http_error")
        .map(|p| (p.code.to_owned(), p))
        .collect();

    let (missing, unknown) = differences(&documented, &table);
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/api.md, Error codes: missing {missing:?}; not codes of src/error.rs {unknown:?}"
    );
    for (code, problem) in &table {
        let row = &documented[code];
        let expected = [
            problem.status.as_u16().to_string(),
            problem.code.to_owned(),
            format!("{:?}", problem.class),
            if problem.retry_after { "yes" } else { "no" }.to_owned(),
        ];
        assert_eq!(
            row[..4],
            expected,
            "docs/api.md, Error codes, row `{code}` (status, code, error_class, Retry-After)"
        );
    }
    assert!(
        repo_file("docs/api.md").contains("`http_error`"),
        "docs/api.md says what `http_error` is"
    );
}

/// `config/base.yaml` as `key.path` → the value as the docs spell it (`""` for an empty string).
fn base_yaml_leaves() -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: config::Value, out: &mut BTreeMap<String, String>) {
        use config::ValueKind as K;
        let text = match value.kind {
            K::Table(table) => {
                for (key, value) in table {
                    let path = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, value, out);
                }
                return;
            }
            K::Array(items) if items.is_empty() => "[]".to_owned(),
            K::String(s) if s.is_empty() => r#""""#.to_owned(),
            K::String(s) => s,
            K::Boolean(b) => b.to_string(),
            K::I64(n) => n.to_string(),
            K::U64(n) => n.to_string(),
            K::I128(n) => n.to_string(),
            K::U128(n) => n.to_string(),
            K::Float(n) => n.to_string(),
            other => panic!("config/base.yaml, {prefix}: no docs spelling for {other:?}"),
        };
        out.insert(prefix.to_owned(), text);
    }
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/base.yaml");
    let root = config::Config::builder()
        .add_source(config::File::from(path))
        .build()
        .expect("config/base.yaml parses")
        .cache;
    let mut out = BTreeMap::new();
    walk("", root, &mut out);
    out
}

#[test]
fn the_settings_table_of_docs_configuration_md_is_config_base_yaml() {
    let documented = keyed_table("docs/configuration.md", "## Settings", 0);
    let base = base_yaml_leaves();

    let (missing, unknown) = differences(&documented, &base);
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md, Settings: missing {missing:?}; not in config/base.yaml {unknown:?}"
    );
    for (key, default) in &base {
        let row = &documented[key];
        assert_eq!(
            &row[1], default,
            "docs/configuration.md, Settings, `{key}`: the default is config/base.yaml's"
        );
        let (section, name) = key.split_once('.').unwrap();
        let variable = format!("APP_{section}__{name}").to_uppercase();
        assert!(
            row[2] == variable || row[2].starts_with(&format!("{variable}` ")),
            "docs/configuration.md, Settings, `{key}`: the variable is {variable}, not {:?}",
            row[2]
        );
    }
}

/// `src/metrics.rs`'s exported names (`pub const X: &str = "name";`) → the kind of macro
/// (`counter`, `gauge`, `histogram`) each is recorded with anywhere in `src/`.
fn exported_metrics() -> BTreeMap<String, String> {
    fn sources(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut all = String::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    let compact: String = all.chars().filter(|c| !c.is_whitespace()).collect();

    let mut out = BTreeMap::new();
    for line in repo_file("src/metrics.rs").lines() {
        let Some(rest) = line.trim().strip_prefix("pub const ") else {
            continue;
        };
        let Some((constant, value)) = rest.split_once(": &str = ") else {
            continue;
        };
        let name = value.trim_end_matches(';').trim_matches('"').to_owned();
        let kinds: Vec<&str> = ["counter", "gauge", "histogram"]
            .into_iter()
            .filter(|kind| {
                [
                    format!("{kind}!({constant},"),
                    format!("{kind}!({constant})"),
                    format!("{kind}!(crate::metrics::{constant},"),
                    format!("{kind}!(crate::metrics::{constant})"),
                ]
                .iter()
                .any(|call| compact.contains(call.as_str()))
            })
            .collect();
        assert_eq!(
            kinds.len(),
            1,
            "src/metrics.rs, {constant}: recorded as exactly one kind, found {kinds:?}"
        );
        out.insert(name, kinds[0].to_owned());
    }
    assert!(!out.is_empty(), "src/metrics.rs exports no names");
    out
}

#[test]
fn the_metrics_table_of_docs_operations_md_is_what_src_metrics_rs_exports() {
    let documented: BTreeMap<String, String> = keyed_table("docs/operations.md", "## Metrics", 0)
        .into_iter()
        .map(|(name, row)| (name, row[1].clone()))
        .collect();
    let exported = exported_metrics();

    let (missing, unknown) = differences(&documented, &exported);
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/operations.md, Metrics: missing {missing:?}; not exported by src/metrics.rs {unknown:?}"
    );
    assert_eq!(
        documented, exported,
        "docs/operations.md, Metrics: each metric's type is the one src/metrics.rs records it as"
    );
}

#[test]
fn the_parameter_table_of_docs_api_md_is_the_openapi_documents() {
    // Path and query rows only, on both sides: most headers (Content-Type, x-request-id) and the
    // "anything else" row have no parameter entry, and the one header that has (Idempotency-Key)
    // is documented in its own section.
    let documented: BTreeMap<String, String> = keyed_table("docs/api.md", "### Parameters", 0)
        .into_iter()
        .filter(|(name, row)| {
            matches!(row[1].as_str(), "path" | "query") && name != "anything else"
        })
        .map(|(name, row)| (name, row[1].clone()))
        .collect();
    let doc = serde_json::to_value(kinesis_writer::routes::openapi()).unwrap();
    let generated: BTreeMap<String, String> =
        doc["paths"]["/streams/{stream}/records"]["post"]["parameters"]
            .as_array()
            .expect("the write route documents its parameters")
            .iter()
            .map(|p| {
                let field = |f: &str| p[f].as_str().unwrap().to_owned();
                (field("name"), field("in"))
            })
            .filter(|(_, place)| matches!(place.as_str(), "path" | "query"))
            .collect();

    let (missing, unknown) = differences(&documented, &generated);
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/api.md, Parameters: missing {missing:?}; not parameters of the code {unknown:?}"
    );
    assert_eq!(
        documented, generated,
        "docs/api.md, Parameters: each parameter is where (path or query) the code reads it"
    );
}
