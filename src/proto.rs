//! Generated gRPC code: KEDA's external-scaler protocol and our Explain service.

#![allow(clippy::all, missing_docs)]

pub mod externalscaler {
    tonic::include_proto!("externalscaler");
}

pub mod llmscaler {
    pub mod v1 {
        tonic::include_proto!("llmscaler.v1");
    }
}

/// Descriptors of every service we serve, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("scaler_descriptor");
