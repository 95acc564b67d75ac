//! A programmable stand-in for Kinesis' PutRecord/PutRecords (AWS JSON 1.1), for what the emulator
//! cannot do: inject throttling, partial failures and delays, and measure the service's own speed.
