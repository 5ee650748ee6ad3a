//! A minimal raw-protocol client for tests: typed `kafka-protocol` requests over one TCP
//! connection, answered in order. It trusts the server's bytes (it decodes with
//! `kafka-protocol`'s generated codecs), so point it only at test servers.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Errors of the raw client.
#[derive(Debug)]
pub enum RawError {
    /// The connection failed or closed.
    Io(std::io::Error),
    /// Encoding or decoding failed.
    Codec(String),
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawError::Io(e) => write!(f, "i/o: {e}"),
            RawError::Codec(e) => write!(f, "codec: {e}"),
        }
    }
}

impl std::error::Error for RawError {}

impl From<std::io::Error> for RawError {
    fn from(e: std::io::Error) -> Self {
        RawError::Io(e)
    }
}

/// One connection speaking typed requests.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    next_id: i32,
    client_id: String,
}

impl RawClient {
    /// Connects to `addr`. Cancel safe.
    pub async fn connect(addr: SocketAddr) -> Result<RawClient, RawError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            next_id: 1,
            client_id: "krust-testkit-raw".into(),
        })
    }

    fn frame<R: Request>(&mut self, req: &R, version: i16) -> Result<(i32, BytesMut), RawError> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| RawError::Codec("unknown api".into()))?;
        let id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| RawError::Codec(e.to_string()))?;
        req.encode(&mut buf, version)
            .map_err(|e| RawError::Codec(e.to_string()))?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Ok((id, buf))
    }

    /// Sends a request without waiting for an answer (Produce with acks=0, pipelining).
    /// Returns its correlation id. Not cancel safe (a partly written frame corrupts the stream).
    pub async fn send_only<R: Request>(&mut self, req: &R, version: i16) -> Result<i32, RawError> {
        let (id, buf) = self.frame(req, version)?;
        self.stream.write_all(&buf).await?;
        Ok(id)
    }

    /// Reads the next response, which must answer a request of type `R` sent at `version`.
    /// Cancel safety: none (a partially read frame is lost).
    pub async fn recv<R: Request>(&mut self, version: i16) -> Result<(i32, R::Response), RawError> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| RawError::Codec("unknown api".into()))?;
        let len = self.stream.read_i32().await?;
        if !(0..=256 * 1024 * 1024).contains(&len) {
            return Err(RawError::Codec(format!("bad frame length {len}")));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| RawError::Codec(e.to_string()))?;
        let resp =
            R::Response::decode(&mut body, version).map_err(|e| RawError::Codec(e.to_string()))?;
        Ok((header.correlation_id, resp))
    }

    /// Sends a request and waits for its response. Not cancel safe: after a cancellation the
    /// connection's framing is unknown; drop the client.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, RawError> {
        let id = self.send_only(req, version).await?;
        let (got, resp) = self.recv::<R>(version).await?;
        if got != id {
            return Err(RawError::Codec(format!(
                "correlation id {got}, expected {id}"
            )));
        }
        Ok(resp)
    }
}

/// A Fetch of one partition from `offset`, read_uncommitted, with limits large enough to read a
/// test log whole (64 MiB per response, 32 MiB per partition) and no fetch session: what tests
/// that audit a log batch by batch send.
pub fn whole_log_fetch(
    topic: &str,
    partition: i32,
    offset: i64,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(32 << 20)])])
}
