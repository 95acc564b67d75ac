//! Black-box tests: the service over real HTTP, against the real Kinesis emulator (kinesis-local,
//! started once per test binary by `helpers`), a fresh stream per test. Records are read back
//! with GetRecords and compared byte for byte.

mod aggregation;
mod cli;
mod coalesce;
mod connections;
mod delivery;
mod docs;
mod errors;
mod health;
mod helpers;
mod idempotency;
mod lean;
mod limits;
mod moto;
mod openapi;
mod outage;
mod production;
mod properties;
mod records;
mod records_v2;
mod spool;
