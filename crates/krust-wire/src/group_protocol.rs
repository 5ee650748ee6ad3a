//! The consumer embedded protocol: the member metadata (`ConsumerProtocolSubscription`) a
//! member puts in its JoinGroup request, and the assignment (`ConsumerProtocolAssignment`) the
//! leader hands out through SyncGroup.
//!
//! Both travel as opaque bytes through the coordinator, prefixed with a big-endian `i16`
//! version, exactly as the Java client writes them, so krust, Java and librdkafka members can
//! share one group. They were written by *other* members: untrusted input. They are therefore
//! decoded with krust's bounded [`ByteSource`] (never with `kafka-protocol`'s decoders, which
//! pre-allocate from wire counts), into `kafka-protocol`'s generated types.
//!
//! Compatibility rules (the Java client's):
//! - a version newer than 3 is read as version 3 and the bytes after the known fields are
//!   ignored (newer clients append fields; they never reorder them);
//! - a negative version is an error;
//! - an empty assignment (zero bytes: what a leader sends to a member it gave nothing, in some
//!   clients) is an empty assignment at version 0.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
pub use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::Encodable;

use crate::error::{Error, Result};
use crate::protocol::{ByteSource, Source};

/// The highest embedded-protocol version krust reads and writes.
pub const MAX_VERSION: i16 = 3;

/// The protocol type a consumer group announces in JoinGroup.
pub const PROTOCOL_TYPE: &str = "consumer";

/// Decodes the fields of a subscription of `version` (0..=3) from `src`.
///
/// Written once over [`Source`]: over a [`ByteSource`] it reads untrusted bytes with every count
/// bounded; over a `RandomSource` it invents a valid subscription (for tests).
pub fn decode_subscription_body<S: Source>(
    src: &mut S,
    version: i16,
) -> Result<ConsumerProtocolSubscription> {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = src.array(|s| s.string())?;
    s.user_data = src.nullable_bytes()?;
    if version >= 1 {
        s.owned_partitions = src.array(|s| {
            let mut t = OwnedTopic::default();
            t.topic = s.string()?.into();
            t.partitions = s.array(|s| s.i32())?;
            Ok(t)
        })?;
    }
    if version >= 2 {
        s.generation_id = src.i32()?;
    }
    if version >= 3 {
        s.rack_id = src.nullable_string()?;
    }
    Ok(s)
}

/// Decodes the fields of an assignment of `version` (0..=3) from `src`.
pub fn decode_assignment_body<S: Source>(
    src: &mut S,
    _version: i16,
) -> Result<ConsumerProtocolAssignment> {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = src.array(|s| {
        let mut t = AssignedTopic::default();
        t.topic = s.string()?.into();
        t.partitions = s.array(|s| s.i32())?;
        Ok(t)
    })?;
    a.user_data = src.nullable_bytes()?;
    Ok(a)
}

fn header(bytes: &Bytes, what: &'static str) -> Result<(i16, ByteSource)> {
    let mut src = ByteSource::new(bytes.clone(), false);
    let version = src.i16()?;
    if version < 0 {
        return Err(Error::malformed(
            what,
            0,
            format!("negative embedded protocol version {version}"),
        ));
    }
    Ok((version, src))
}

/// Decodes a member's subscription metadata (version header included), as received in a
/// JoinGroup response. Returns the version the sender wrote and the subscription.
pub fn decode_subscription(bytes: Bytes) -> Result<(i16, ConsumerProtocolSubscription)> {
    const WHAT: &str = "ConsumerProtocolSubscription";
    let (version, mut src) = header(&bytes, WHAT)?;
    let s = decode_subscription_body(&mut src, version.min(MAX_VERSION))?;
    if version <= MAX_VERSION {
        src.finish(WHAT)?;
    }
    Ok((version, s))
}

/// Decodes an assignment (version header included), as received in a SyncGroup response.
/// Zero bytes are an empty assignment (version 0).
pub fn decode_assignment(bytes: Bytes) -> Result<(i16, ConsumerProtocolAssignment)> {
    const WHAT: &str = "ConsumerProtocolAssignment";
    if bytes.is_empty() {
        return Ok((0, ConsumerProtocolAssignment::default()));
    }
    let (version, mut src) = header(&bytes, WHAT)?;
    let a = decode_assignment_body(&mut src, version.min(MAX_VERSION))?;
    if version <= MAX_VERSION {
        src.finish(WHAT)?;
    }
    Ok((version, a))
}

fn encode_versioned<T: Encodable>(value: &T, version: i16, what: &'static str) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    value
        .encode(&mut buf, version)
        .map_err(|e| Error::malformed(what, 0, format!("cannot encode v{version}: {e}")))?;
    Ok(buf.freeze())
}

/// Encodes a subscription with its version header. Fields the version lacks must be at their
/// defaults (an error otherwise); `version` must be 0..=3.
pub fn encode_subscription(s: &ConsumerProtocolSubscription, version: i16) -> Result<Bytes> {
    if !(0..=MAX_VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            api: "ConsumerProtocolSubscription",
            version,
        });
    }
    if version == 0 && !s.owned_partitions.is_empty() {
        // kafka-protocol would silently drop them at v0; that would hide a bug.
        return Err(Error::malformed(
            "ConsumerProtocolSubscription",
            0,
            "owned partitions need version 1 or later",
        ));
    }
    encode_versioned(s, version, "ConsumerProtocolSubscription")
}

/// Encodes an assignment with its version header (`version` 0..=3; the layout is the same).
pub fn encode_assignment(a: &ConsumerProtocolAssignment, version: i16) -> Result<Bytes> {
    if !(0..=MAX_VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            api: "ConsumerProtocolAssignment",
            version,
        });
    }
    encode_versioned(a, version, "ConsumerProtocolAssignment")
}

/// The `user_data` of Java's eager `sticky` assignor (`StickyAssignorUserData` v1): the member's
/// previous assignment and its generation, so the leader can stay sticky although eager members
/// report no owned partitions. Layout: `[topic: string, partitions: [i32]]`, then `generation:
/// i32` (absent in v0 data).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StickyUserData {
    /// The previous assignment, by topic.
    pub previous: Vec<(String, Vec<i32>)>,
    /// The generation of that assignment, if the sender wrote it.
    pub generation: Option<i32>,
}

impl StickyUserData {
    /// Encodes (always with the generation, as Java 2.3+ does).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.extend_from_slice(&(self.previous.len() as i32).to_be_bytes());
        for (t, ps) in &self.previous {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
            b.extend_from_slice(&(ps.len() as i32).to_be_bytes());
            for p in ps {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        b.extend_from_slice(&self.generation.unwrap_or(-1).to_be_bytes());
        b.freeze()
    }

    /// Decodes untrusted bytes (bounded); trailing bytes after the generation are ignored.
    pub fn decode(bytes: Bytes) -> Result<Self> {
        let mut src = ByteSource::new(bytes, false);
        let previous = src.array(|s| {
            let t = s.string()?.to_string();
            let ps = s.array(|s| s.i32())?;
            Ok((t, ps))
        })?;
        let generation = if src.remaining() >= 4 {
            Some(src.i32()?)
        } else {
            None
        };
        Ok(StickyUserData {
            previous,
            generation,
        })
    }
}
