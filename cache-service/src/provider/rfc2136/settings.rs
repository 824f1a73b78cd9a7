//! The RFC 2136 provider's settings: where the zone's primary server is,
//! the TSIG key that may change it (a secret that never shows in `Debug`),
//! and the defaults of its timeout and batch size.

use std::time::Duration;

use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use trafego_proto::validate::Hostname;

/// The TTL sent for records asking for "automatic": five minutes, as the
/// zone-file provider writes.
pub const DEFAULT_TTL: u32 = 300;

/// Changes per UPDATE message unless configured.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// How long a connection, a write or one answer may take unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TSIG algorithms accepted, as servers spell them.
const ALGORITHMS: [(&str, TsigAlgorithm); 3] = [
    ("hmac-sha256", TsigAlgorithm::HmacSha256),
    ("hmac-sha384", TsigAlgorithm::HmacSha384),
    ("hmac-sha512", TsigAlgorithm::HmacSha512),
];

/// The TSIG secret: bytes that never show in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigSecret(pub(super) Vec<u8>);

impl TsigSecret {
    /// Decodes a base64 secret (as `tsig-keygen`, `keymgr` and `pdnsutil`
    /// print them); `setting` names where it came from in the error, which
    /// never repeats the value.
    pub fn from_base64(setting: &str, text: &str) -> Result<Self, String> {
        let compact: String = text.split_whitespace().collect();
        match data_encoding::BASE64.decode(compact.as_bytes()) {
            Ok(bytes) if !bytes.is_empty() => Ok(TsigSecret(bytes)),
            Ok(_) => Err(format!("{setting} is empty")),
            Err(e) => Err(format!(
                "{setting} is not base64 (RFC 4648, with padding) as TSIG secrets are written: \
                 {} at byte {}",
                e.kind, e.position
            )),
        }
    }
}

impl std::fmt::Debug for TsigSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TsigSecret(<redacted>)")
    }
}

/// Parses `RFC2136_TSIG_ALGORITHM`: `hmac-sha256`, `hmac-sha384` or
/// `hmac-sha512`, any case, with or without the trailing dot.
pub fn parse_algorithm(setting: &str, text: &str) -> Result<TsigAlgorithm, String> {
    let wanted = text.trim().trim_end_matches('.').to_ascii_lowercase();
    ALGORITHMS
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, alg)| alg.clone())
        .ok_or_else(|| {
            format!(
                "{setting} {text:?} is not supported; use one of {}",
                ALGORITHMS.map(|(n, _)| n).join(", ")
            )
        })
}

/// Where the zone is and the key that may change it.
#[derive(Debug, Clone)]
pub struct Rfc2136Config {
    /// `host:port` of the zone's primary server (port 53 when left out).
    pub server: String,
    /// The zone.
    pub zone: Hostname,
    /// The TSIG key's name, as the server knows it.
    pub key_name: String,
    /// The key's secret.
    pub secret: TsigSecret,
    /// The key's HMAC.
    pub algorithm: TsigAlgorithm,
    /// Longest wait for a connection, a write or one answer message.
    pub timeout: Duration,
    /// Changes per UPDATE message (at least 1).
    pub batch_size: usize,
}

impl Rfc2136Config {
    /// A configuration with the default algorithm, timeout and batch size.
    pub fn new(server: &str, zone: Hostname, key_name: &str, secret: TsigSecret) -> Self {
        Rfc2136Config {
            server: server.to_string(),
            zone,
            key_name: key_name.to_string(),
            secret,
            algorithm: TsigAlgorithm::HmacSha256,
            timeout: DEFAULT_TIMEOUT,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

/// `server` as `host:port`, port 53 when it names none: `ns1.example.net`,
/// `192.0.2.53` and `::1` get it; `ns1:5300`, `[::1]:5300` keep theirs.
pub(super) fn with_port(server: &str) -> String {
    if server.parse::<std::net::SocketAddr>().is_ok() {
        return server.to_string();
    }
    match server.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, 53).to_string(),
        Err(_) if server.contains(':') => server.to_string(),
        Err(_) => format!("{server}:53"),
    }
}
