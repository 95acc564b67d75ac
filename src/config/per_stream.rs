//! The one shape of every per-stream list (`streams.allowed`, `limits.streams`,
//! `delivery.streams`, `coalesce.streams`, `aggregation.streams`): an entry is a bare stream name
//! (`- clickstream`, or `APP_COALESCE__STREAMS=clickstream,orders`) or a table `{name, ...}` of
//! what that section lets a stream set. A new per-stream setting is a field of its section's
//! overrides type, not a parser of its own; [`find`] is the one place a list is searched, and
//! `Settings::stream` (config/mod.rs) the one place a stream's settings are resolved.

use serde::Deserialize;

/// One entry of a per-stream list: the stream's name, and what the entry sets (nothing for a
/// bare name: `T::default()`, every field `None`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    from = "Entry<T>",
    bound(deserialize = "T: Default + Deserialize<'de>")
)]
pub struct PerStream<T> {
    pub name: String,
    pub set: T,
}

/// How an entry is written: a bare name, or a table with `name` and the section's fields.
#[derive(Deserialize)]
#[serde(untagged, bound(deserialize = "T: Deserialize<'de>"))]
enum Entry<T> {
    Name(String),
    Fields {
        name: String,
        #[serde(flatten)]
        set: T,
    },
}

impl<T: Default> From<Entry<T>> for PerStream<T> {
    fn from(entry: Entry<T>) -> Self {
        match entry {
            Entry::Name(name) => Self::named(name),
            Entry::Fields { name, set } => Self { name, set },
        }
    }
}

impl<T: Default> PerStream<T> {
    /// A bare name: the section's defaults for this stream (and its feature on, for sections
    /// that can be switched per stream).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            set: T::default(),
        }
    }
}

impl<T> PerStream<T> {
    /// An entry that sets `set` for `name`.
    pub fn with(name: impl Into<String>, set: T) -> Self {
        Self {
            name: name.into(),
            set,
        }
    }
}

/// What `list` sets for `stream`, if the stream is listed (the first entry wins).
pub(super) fn find<'a, T>(list: &'a [PerStream<T>], stream: &str) -> Option<&'a T> {
    list.iter().find(|e| e.name == stream).map(|e| &e.set)
}

/// Refuses an entry whose name is not a valid stream name, naming the list (`section`).
pub(super) fn validate_names<T>(section: &str, list: &[PerStream<T>]) -> anyhow::Result<()> {
    for entry in list {
        crate::domain::StreamName::parse(&entry.name)
            .map_err(|e| anyhow::anyhow!("{section}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
    struct Set {
        enabled: Option<bool>,
        linger_ms: Option<u64>,
    }

    #[test]
    fn an_entry_is_a_bare_name_or_a_table() {
        let list: Vec<PerStream<Set>> =
            serde_json::from_str(r#"["a", {"name": "b", "linger_ms": 5}, {"name": "c"}]"#).unwrap();
        assert_eq!(list[0], PerStream::named("a"));
        assert_eq!(
            find(&list, "b"),
            Some(&Set {
                enabled: None,
                linger_ms: Some(5)
            })
        );
        assert_eq!(find(&list, "c"), Some(&Set::default()));
        assert_eq!(find(&list, "d"), None);
        assert!(validate_names("x.streams", &list).is_ok());
        let bad = vec![PerStream::<Set>::named("bad name!")];
        let err = validate_names("x.streams", &bad).unwrap_err().to_string();
        assert!(err.starts_with("x.streams: "), "{err}");
    }
}
