//! DNS over TCP with TSIG for the RFC 2136 provider: one connection per
//! exchange, each message framed with its two-byte length (RFC 1035 section
//! 4.2.2), signed with the key (RFC 8945), and every answer message checked
//! against the key, a zone transfer's messages each in turn, chained to the
//! one before it.
//!
//! It must never take an answer that fails the check for a success, never
//! put the key in an error or a log line, and it tells a message that never
//! left (no connection) from one whose answer was lost (the server may have
//! applied it), so an update is never reported as failed when it may stand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Record, RecordType as WireType, TSigVerifier, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::provider::ProviderError;

/// Seconds of clock difference the server may see in a signature (RFC 8945
/// recommends 300).
pub const FUDGE: u16 = 300;

/// How an exchange failed to bring back an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing reached the server (it could not be connected to): nothing
    /// was applied.
    NotSent(String),
    /// The message was sent, or may have been, and no usable answer came
    /// back (a timeout, a closed connection, an answer that does not parse).
    Lost(String),
}

/// The server's answer to one message.
#[derive(Debug)]
pub struct Reply {
    /// The answer as decoded.
    pub message: Message,
    /// Why the answer's TSIG did not check out, `None` when it did. A server
    /// refusing the key answers unsigned (RFC 8945 section 5.2), so an
    /// unverified answer is still read for its RCODE, never taken as success.
    pub unverified: Option<String>,
}

impl Reply {
    /// The RCODE, with the TSIG error when the answer carries one, as the
    /// server's words for messages: `NOTAUTH (TSIG BADSIG)`.
    pub fn describe(&self) -> String {
        describe(&self.message)
    }
}

/// A message's RCODE and TSIG error in words.
pub fn describe(message: &Message) -> String {
    let mut text = message.response_code.to_str().to_uppercase();
    if let Some(error) = message.signature().and_then(|s| s.data.error.as_ref()) {
        text.push_str(&format!(" (TSIG {error:?})").to_uppercase());
    }
    text
}

/// Signs and sends messages to one server.
pub struct Transport {
    /// `host:port` of the primary server.
    pub server: String,
    /// The TSIG key (its secret never leaves this value).
    pub signer: TSigner,
    /// Longest wait for a connection, a write, or one answer message.
    pub timeout: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Transport {
    /// Signs `message`, connects and sends it; returns the stream and the
    /// verifier for the answers.
    async fn send(&self, mut message: Message) -> Result<(TcpStream, TSigVerifier), Failure> {
        let verifier = message
            .finalize(&self.signer, now_secs())
            .map_err(|e| Failure::NotSent(format!("signing the message failed: {e}")))?
            .ok_or_else(|| Failure::NotSent("signing the message gave no verifier".into()))?;
        let bytes = message
            .to_vec()
            .map_err(|e| Failure::NotSent(format!("encoding the message failed: {e}")))?;
        let len = u16::try_from(bytes.len()).map_err(|_| {
            Failure::NotSent(format!(
                "the message is {} bytes, over DNS's 65,535",
                bytes.len()
            ))
        })?;
        let mut stream =
            match tokio::time::timeout(self.timeout, TcpStream::connect(&self.server)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(Failure::NotSent(format!(
                        "cannot connect to {}: {e}",
                        self.server
                    )));
                }
                Err(_) => {
                    return Err(Failure::NotSent(format!(
                        "connecting to {} took over {:?}",
                        self.server, self.timeout
                    )));
                }
            };
        let _ = stream.set_nodelay(true);
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&bytes);
        match tokio::time::timeout(self.timeout, stream.write_all(&framed)).await {
            Ok(Ok(())) => Ok((stream, verifier)),
            Ok(Err(e)) => Err(Failure::Lost(format!(
                "sending to {} failed: {e}",
                self.server
            ))),
            Err(_) => Err(Failure::Lost(format!(
                "sending to {} took over {:?}",
                self.server, self.timeout
            ))),
        }
    }

    /// Reads one framed answer message.
    async fn read(&self, stream: &mut TcpStream) -> Result<Vec<u8>, Failure> {
        let read = async {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(buf)) => Ok(buf),
            Ok(Err(e)) => Err(Failure::Lost(format!(
                "no answer from {}: {e}",
                self.server
            ))),
            Err(_) => Err(Failure::Lost(format!(
                "no answer from {} within {:?}",
                self.server, self.timeout
            ))),
        }
    }

    /// Decodes an answer and checks it belongs to the request `id`.
    fn decode(&self, bytes: &[u8], id: u16) -> Result<Message, Failure> {
        let message = Message::from_vec(bytes).map_err(|e| {
            Failure::Lost(format!("the answer of {} does not parse: {e}", self.server))
        })?;
        if message.id != id || message.message_type != MessageType::Response {
            return Err(Failure::Lost(format!(
                "{} answered another message (id {}, expected {id})",
                self.server, message.id
            )));
        }
        Ok(message)
    }

    /// Sends one message and reads its one answer.
    pub async fn exchange(&self, message: Message) -> Result<Reply, Failure> {
        let id = message.id;
        let (mut stream, mut verifier) = self.send(message).await?;
        let bytes = self.read(&mut stream).await?;
        let message = self.decode(&bytes, id)?;
        let unverified = verifier.verify(&bytes).err().map(|e| e.to_string());
        Ok(Reply {
            message,
            unverified,
        })
    }

    /// A whole zone transfer: every record from the opening SOA to the
    /// closing one (both left in), and the number of answer messages. Each
    /// message must carry a TSIG that checks out, chained to the previous.
    pub async fn transfer(&self, message: Message) -> Result<(Vec<Record>, u64), ProviderError> {
        let id = message.id;
        let unavailable = |f: Failure| match f {
            Failure::NotSent(m) | Failure::Lost(m) => ProviderError::Unavailable(m),
        };
        let (mut stream, mut verifier) = self.send(message).await.map_err(unavailable)?;
        let mut records: Vec<Record> = Vec::new();
        let mut messages = 0u64;
        let mut soas = 0u32;
        while soas < 2 {
            let bytes = self.read(&mut stream).await.map_err(unavailable)?;
            let message = self.decode(&bytes, id).map_err(unavailable)?;
            messages = messages.saturating_add(1);
            let verified = verifier.verify(&bytes);
            if message.response_code != ResponseCode::NoError {
                return Err(refusal(&message, "the zone transfer"));
            }
            if let Err(e) = verified {
                return Err(ProviderError::Unavailable(format!(
                    "message {messages} of the zone transfer from {} failed its TSIG check: {e}",
                    self.server
                )));
            }
            if message.answers.is_empty() {
                return Err(ProviderError::Unavailable(format!(
                    "{} ended the zone transfer without its closing SOA",
                    self.server
                )));
            }
            for record in message.answers {
                if records.is_empty() && record.record_type() != WireType::SOA {
                    return Err(ProviderError::Unavailable(format!(
                        "{}'s zone transfer does not open with the SOA",
                        self.server
                    )));
                }
                if record.record_type() == WireType::SOA {
                    soas += 1;
                }
                if soas >= 2 {
                    break;
                }
                records.push(record);
            }
        }
        Ok((records, messages))
    }
}

/// The error for an answer whose RCODE says no: the server refusing the key
/// or the request (NOTAUTH, REFUSED, or a TSIG error) is
/// [`ProviderError::Unauthorized`]; anything else is
/// [`ProviderError::Unavailable`]. `what` names the request.
pub fn refusal(message: &Message, what: &str) -> ProviderError {
    let words = describe(message);
    let tsig_error = message.signature().is_some_and(|s| s.data.error.is_some());
    match message.response_code {
        ResponseCode::NotAuth | ResponseCode::Refused => ProviderError::Unauthorized(format!(
            "the server answered {what} with {words}: check RFC2136_TSIG_KEY_NAME, the \
             secret and RFC2136_TSIG_ALGORITHM, and that the key may update and transfer the zone"
        )),
        _ if tsig_error => ProviderError::Unauthorized(format!(
            "the server answered {what} with {words}: check the TSIG key and the clocks"
        )),
        _ => ProviderError::Unavailable(format!("the server answered {what} with {words}")),
    }
}
