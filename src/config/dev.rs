//! `dev:`: local development only, the streams `kinesis-writer create-streams` creates in an
//! emulator.

use serde::Deserialize;

/// A list entry given as a bare name or as a table of fields.
#[derive(Deserialize)]
#[serde(untagged)]
enum NameOr<T> {
    Name(String),
    Fields(T),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DevSettings {
    #[serde(default)]
    pub create_streams: Vec<DevStream>,
}

/// A stream `kinesis-writer create-streams` creates (local development only): `{name, shards}`,
/// or `name` / `name:shards` as the emulator's `INITIALIZE_STREAMS` spells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "NameOr<DevStreamFields>")]
pub struct DevStream {
    pub name: String,
    pub shards: i32,
}

#[derive(Deserialize)]
struct DevStreamFields {
    name: String,
    #[serde(default = "one")]
    shards: i32,
}

fn one() -> i32 {
    1
}

impl TryFrom<NameOr<DevStreamFields>> for DevStream {
    type Error = String;

    fn try_from(entry: NameOr<DevStreamFields>) -> Result<Self, String> {
        match entry {
            NameOr::Fields(f) => Ok(Self {
                name: f.name,
                shards: f.shards,
            }),
            NameOr::Name(spec) => match spec.split_once(':') {
                None => Ok(Self {
                    name: spec,
                    shards: 1,
                }),
                Some((name, shards)) => Ok(Self {
                    name: name.to_owned(),
                    shards: shards
                        .parse()
                        .map_err(|_| format!("dev stream {spec:?}: shards must be a number"))?,
                }),
            },
        }
    }
}
