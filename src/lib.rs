//! keda-llm-scaler: a KEDA external scaler that answers with the replica demand of an
//! LLM inference fleet, computed from queue depth, token throughput and KV-cache
//! headroom read from Prometheus.
//!
//! The demand model ([`demand`]) is pure; I/O sits at the edges: [`source`] reads
//! metrics, [`server`] speaks gRPC and HTTP, [`config`] loads the ConfigMap.

#![forbid(unsafe_code)]
// Every public item is documented; CI's clippy `-D warnings` makes this an error.
#![warn(missing_docs)]

pub mod calibrate;
pub mod cli;
pub mod config;
pub mod demand;
pub mod engine;
pub mod proto;
pub mod query;
pub mod server;
pub mod sim;
pub mod source;
