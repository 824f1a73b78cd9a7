//! What a replica that does not lead does with a read it cannot answer
//! itself: a `ListRecords` or `GetRecord` whose zones are too old (only the
//! leader refreshes) is sent on to the leader, as it came (metadata,
//! deadline and bearer token included), and the leader's answer is returned.
//!
//! It never serves a stale read as fresh and never refreshes: with no leader
//! known, with server TLS but no `FORWARD_CA_FILE` (nothing to check the
//! leader's certificate against), or for a call already forwarded once (a
//! leader that stepped down in between), it answers `UNAVAILABLE`, naming
//! the leader when known, so the caller retries. Write RPCs never reach here: `Forward` (in
//! `trafego_common::leader::forward`) sends them on before the service sees
//! them.

use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Status};
use trafego_common::leader::forward::{
    FORWARD_OFF_HINT, FORWARDED_HEADER, Forwarding, LeaderChannels,
};
use trafego_proto::cache::cache_service_client::CacheServiceClient;

/// Reads sent on to the leader: one lazily connected channel per leader
/// address seen.
pub struct LeaderReads {
    /// The largest message either way, as this replica's own.
    max_message_bytes: usize,
    channels: LeaderChannels,
}

impl LeaderReads {
    /// Reads sent on as `forwarding` says, connecting within `connect_timeout`.
    pub fn new(
        forwarding: Forwarding,
        connect_timeout: Duration,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            max_message_bytes,
            channels: LeaderChannels::new(connect_timeout, forwarding),
        }
    }

    /// A client of the leader at `addr` and the request to send it: `msg`
    /// with the caller's `metadata`, marked as forwarded. `UNAVAILABLE`
    /// naming the leader when this replica may not forward it.
    pub fn prepare<T>(
        &self,
        addr: &str,
        metadata: &MetadataMap,
        msg: T,
    ) -> Result<(CacheServiceClient<Channel>, Request<T>), Status> {
        if metadata.contains_key(FORWARDED_HEADER) {
            return Err(Status::unavailable(format!(
                "this replica was forwarded a read it cannot serve fresh enough: it does not \
                 lead (the leader is at {addr}); retry"
            )));
        }
        if !self.channels.forwarding().forwards() {
            return Err(Status::unavailable(format!(
                "the cache here is too old for this read and only the leader refreshes it; \
                 send it to the leader at {addr} ({FORWARD_OFF_HINT})"
            )));
        }
        let client = CacheServiceClient::new(self.channels.get(addr)?)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        let mut md = metadata.clone();
        md.insert(FORWARDED_HEADER, MetadataValue::from_static("1"));
        Ok((client, Request::from_parts(md, Default::default(), msg)))
    }
}
