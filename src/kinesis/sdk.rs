//! `SdkPublisher`: `KinesisPublisher` over the AWS SDK client.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::operation::RequestId;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{EncryptionType, PutRecordsRequestEntry};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use aws_sdk_kinesis::config::{ProvideCredentials, SharedCredentialsProvider};

use super::{
    AnswerEntry, KinesisPublisher, NotReady, NotReadyCause, ProbeResult, PublishError, ShardRange,
    put_records_outcome,
};
use crate::config::AllowedStream;
use crate::domain::{PutRecordOutcome, PutRecordsOutcome, Record, StreamName};

/// The production publisher. Cloning is cheap: the SDK clients are `Arc`s inside.
#[derive(Debug, Clone)]
pub struct SdkPublisher {
    client: aws_sdk_kinesis::Client,
    /// The chain the client signs with, asked directly only to explain a failed probe.
    credentials: Option<SharedCredentialsProvider>,
    /// Streams configured with an ARN or another region (`streams.allowed`).
    targets: HashMap<String, Target>,
    /// Where calls go, for the log line of a call that could not reach it.
    endpoint: String,
}

/// How to reach one stream: its client (region) and, optionally, its ARN.
#[derive(Debug, Clone)]
struct Target {
    client: aws_sdk_kinesis::Client,
    arn: Option<String>,
}

impl SdkPublisher {
    /// The publisher over one client built from `config` (which owns the connection pool).
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            client: super::build_sdk_client(config),
            credentials: config.credentials_provider(),
            targets: HashMap::new(),
            endpoint: super::lean::endpoint_url(config).unwrap_or_else(|| {
                let region = config.region().map_or("(none)", |r| r.as_ref());
                format!("(the AWS endpoint of region {region})")
            }),
        }
    }

    /// Adds per-stream ARNs and regions. One client per distinct region, built now, so each keeps
    /// its own connection pool and nothing is built per request.
    pub fn with_targets(mut self, config: &SdkConfig, streams: &[AllowedStream]) -> Self {
        let mut regional: HashMap<String, aws_sdk_kinesis::Client> = HashMap::new();
        for s in streams.iter().filter(|s| s.has_own_target()) {
            let client = match &s.set.region {
                Some(region) => regional
                    .entry(region.clone())
                    .or_insert_with(|| {
                        let conf = aws_sdk_kinesis::config::Builder::from(config)
                            .region(Region::new(region.clone()))
                            .build();
                        aws_sdk_kinesis::Client::from_conf(conf)
                    })
                    .clone(),
                None => self.client.clone(),
            };
            self.targets.insert(
                s.name.clone(),
                Target {
                    client,
                    arn: s.set.arn.clone(),
                },
            );
        }
        self
    }

    /// The client for `stream`, and how calls address it: `(StreamName, StreamARN)`, exactly one
    /// of them set (the ARN when configured).
    fn target(
        &self,
        stream: &StreamName,
    ) -> (&aws_sdk_kinesis::Client, Option<String>, Option<String>) {
        let target = self.targets.get(stream.as_str());
        let client = target.map_or(&self.client, |t| &t.client);
        match target.and_then(|t| t.arn.clone()) {
            Some(arn) => (client, None, Some(arn)),
            None => (client, Some(stream.to_string()), None),
        }
    }
}

fn blob(record: &Record) -> Blob {
    // The SDK's Blob owns a Vec<u8>, so this is the one copy of the record bytes we cannot avoid.
    Blob::new(record.data.to_vec())
}

fn hash_key(record: &Record) -> Option<String> {
    record
        .explicit_hash_key
        .as_ref()
        .map(|k| k.as_str().to_owned())
}

fn encryption(e: Option<&EncryptionType>) -> Option<String> {
    e.map(|e| e.as_str().to_owned())
}

#[async_trait]
impl KinesisPublisher for SdkPublisher {
    async fn put_record(
        &self,
        stream: &StreamName,
        record: &Record,
        ordering: Option<&str>,
    ) -> Result<PutRecordOutcome, PublishError> {
        let (client, name, arn) = self.target(stream);
        let out = client
            .put_record()
            .set_stream_name(name)
            .set_stream_arn(arn)
            .partition_key(record.partition_key.as_str())
            .set_explicit_hash_key(hash_key(record))
            .set_sequence_number_for_ordering(ordering.map(str::to_owned))
            .data(blob(record))
            .send()
            .await
            .map_err(|e| self.classify(&e, stream))?;
        Ok(PutRecordOutcome {
            request_id: out.request_id().map(str::to_owned),
            encryption_type: encryption(out.encryption_type()),
            shard_id: out.shard_id,
            sequence_number: out.sequence_number,
        })
    }

    async fn put_records(
        &self,
        stream: &StreamName,
        records: &[Record],
    ) -> Result<PutRecordsOutcome, PublishError> {
        let entries = records
            .iter()
            .map(|r| {
                PutRecordsRequestEntry::builder()
                    .partition_key(r.partition_key.as_str())
                    .set_explicit_hash_key(hash_key(r))
                    .data(blob(r))
                    .build()
                    .expect("data and partition key are always set")
            })
            .collect();
        let (client, name, arn) = self.target(stream);
        let out = client
            .put_records()
            .set_stream_name(name)
            .set_stream_arn(arn)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| self.classify(&e, stream))?;
        let request_id = out.request_id().map(str::to_owned);
        let encryption_type = encryption(out.encryption_type());
        let entries = out
            .records
            .into_iter()
            .map(|e| AnswerEntry {
                sequence_number: e.sequence_number,
                shard_id: e.shard_id,
                error_code: e.error_code,
                error_message: e.error_message,
            })
            .collect();
        put_records_outcome(entries, records.len(), encryption_type, request_id)
    }

    /// ListShards, every page, open shards only (a closed parent of a resharded stream owns no
    /// new records).
    async fn list_shards(&self, stream: &StreamName) -> Result<Vec<ShardRange>, PublishError> {
        let (client, name, arn) = self.target(stream);
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match token.take() {
                Some(t) => client.list_shards().next_token(t),
                None => client
                    .list_shards()
                    .set_stream_name(name.clone())
                    .set_stream_arn(arn.clone()),
            };
            let out = request
                .send()
                .await
                .map_err(|e| self.classify(&e, stream))?;
            for shard in out.shards() {
                let closed = shard
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some();
                let range = shard.hash_key_range();
                let start = range.and_then(|r| r.starting_hash_key().parse().ok());
                let end = range.and_then(|r| r.ending_hash_key().parse().ok());
                if let (false, Some(start), Some(end)) = (closed, start, end) {
                    shards.push(ShardRange {
                        shard_id: shard.shard_id().to_owned(),
                        start,
                        end,
                    });
                }
            }
            token = out.next_token;
            if token.is_none() {
                return Ok(shards);
            }
        }
    }

    async fn probe(&self) -> ProbeResult {
        let error = match self.client.list_streams().limit(1).send().await {
            Ok(_) => return ProbeResult::Answered,
            // Any modelled or unmodelled answer from the service (even AccessDenied: the role may
            // lack kinesis:ListStreams) proves the endpoint answers and our request was signed.
            Err(SdkError::ServiceError(_)) => return ProbeResult::Answered,
            Err(e) => PublishError::from_sdk(&e).at(&self.endpoint),
        };
        // The SDK reports a credential failure as a generic one: ask the chain itself, so the
        // operator reads "no AWS credentials" rather than a dispatch error.
        if let Err(why) = self.credentials_resolve().await {
            return ProbeResult::Failed(NotReady {
                cause: NotReadyCause::NoCredentials,
                detail: why,
            });
        }
        let cause = match error {
            PublishError::Timeout { .. } => NotReadyCause::TimedOut,
            PublishError::Unavailable { .. } => NotReadyCause::Unreachable,
            PublishError::NoCredentials { .. } => NotReadyCause::NoCredentials,
            _ => NotReadyCause::Other,
        };
        ProbeResult::Failed(NotReady {
            cause,
            detail: error.to_string(),
        })
    }
}

impl SdkPublisher {
    /// An SDK error as ours, naming the stream and, when it was not reached, the endpoint.
    fn classify<E>(&self, e: &SdkError<E, HttpResponse>, stream: &StreamName) -> PublishError
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        PublishError::from_sdk(e)
            .about(stream.as_str())
            .at(&self.endpoint)
    }

    async fn credentials_resolve(&self) -> Result<(), String> {
        let Some(provider) = &self.credentials else {
            return Err("no credentials provider is configured".to_owned());
        };
        provider
            .provide_credentials()
            .await
            .map(drop)
            .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())
    }
}
