//! kinesis-writer: an HTTP front door to AWS Kinesis Data Streams, the HTTP form of the Python
//! `KinesisWriter` class.
//!
//! # Layout
//! A request reads top to bottom through the layers:
//! - [`routes`]: HTTP in and out (path, query, media type, body cap, response shape);
//! - [`service`]: what a write means (limits, partition-key policy, which call);
//! - [`kinesis`]: the narrow port to Kinesis and its SDK implementation.
//!
//! Around them: [`domain`] (validated values, no HTTP or AWS types), [`error`] (the one mapping to
//! problem+json), [`access`] (allowlist and API keys), [`idempotency`] (`Idempotency-Key` replays), [`metrics`] (Prometheus), [`config`],
//! [`telemetry`], [`startup`], [`server`] (the listener and its connection limits) and [`state`];
//! [`testing`] holds the one in-process recording fake the tests share.

pub mod access;
pub mod config;
pub mod dev;
pub mod domain;
pub mod error;
pub mod idempotency;
pub mod kinesis;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod service;
pub mod spool;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod testing;
