//! The TrafegoDNS contract: generated gRPC code for `trafego.cache.v1` and
//! `trafego.tracking.v1`, the encoded descriptor set for reflection, and the
//! validated domain types that both services use past the gRPC edge.
//!
//! Nothing here talks to a database or the network: it only turns wire
//! messages into values that cannot be invalid.

pub mod validate;

/// Generated code of `trafego.cache.v1`.
pub mod cache {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("trafego.cache.v1");
}

/// Generated code of `trafego.tracking.v1`.
pub mod tracking {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("trafego.tracking.v1");
}

/// The encoded `FileDescriptorSet` of `trafego.cache.v1` (and the well-known
/// types it imports), served by cache-service's reflection so grpcurl can list
/// and describe it, comments included.
pub const CACHE_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cache_descriptor.bin"));

/// The encoded `FileDescriptorSet` of `trafego.tracking.v1`, served by
/// tracking-service's reflection.
pub const TRACKING_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tracking_descriptor.bin"));

/// Converts a unix time in milliseconds into a protobuf timestamp.
pub fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        // rem_euclid(1000) is in 0..1000, so the nanos are in 0..1e9 and fit.
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// The gRPC paths (`/package.Service/Method`) of every method of every
/// service in an encoded `FileDescriptorSet`: what a server can answer, so
/// per-method metrics label only these and not whatever path a caller sends.
pub fn method_paths(descriptor_set: &[u8]) -> Result<Vec<String>, prost::DecodeError> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(descriptor_set)?;
    let mut out = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            let full = if package.is_empty() {
                service.name().to_string()
            } else {
                format!("{package}.{}", service.name())
            };
            out.extend(
                service
                    .method
                    .iter()
                    .map(|m| format!("/{full}/{}", m.name())),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn method_paths_name_every_rpc() {
        let cache = super::method_paths(super::CACHE_FILE_DESCRIPTOR_SET).unwrap();
        assert!(cache.contains(&"/trafego.cache.v1.CacheService/ListRecords".to_string()));
        assert!(cache.contains(&"/trafego.cache.v1.CacheService/WatchCache".to_string()));
        let tracking = super::method_paths(super::TRACKING_FILE_DESCRIPTOR_SET).unwrap();
        assert!(
            tracking.contains(&"/trafego.tracking.v1.TrackingService/RunOrphanSweep".to_string())
        );
        assert!(super::method_paths(b"\xff\xff").is_err());
    }
}
