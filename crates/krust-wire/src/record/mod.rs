//! Record batches: the v2 batch format (magic 2) in both directions, and the legacy message sets
//! (magic 0 and 1) on the read side, since old topics still hold them.
//!
//! # Writing (producer side)
//!
//! [`BatchBuilder`] appends records, varint-encoded, to an uncompressed buffer;
//! [`BatchBuilder::estimated_size`] lets a producer honour `batch.size`; and
//! [`BatchBuilder::finish`] compresses, fills the header and computes the CRC32C. The producer
//! id, epoch and base sequence are given at `finish` time, and [`restamp`] rewrites them (and the
//! CRC) on an already built batch, so idempotence can assign sequences when a batch is first
//! sent, or re-assign them after an epoch bump, without re-encoding records.
//!
//! # Reading (consumer side)
//!
//! [`batches`] iterates the [`DeflatedBatch`]es of a Fetch response's `records` bytes, ignoring
//! the partial batch a broker may leave at the end when it hits a fetch size limit. Each batch's
//! CRC is checked while it is split off, before anything is decompressed. [`DeflatedBatch::inflate`]
//! decompresses (bounded by [`DecompressLimits`]) into an [`InflatedBatch`], whose
//! [`records`](InflatedBatch::records) are decoded lazily: keys, values and header values are
//! [`Bytes`] slices of the (decompressed) batch, so memory stays that of the batch itself.
//! Control batches (transaction commit/abort markers) expose their [`ControlRecord`].
//!
//! # Layout of a v2 batch
//!
//! ```text
//! offset  size  field
//!  0      8     baseOffset
//!  8      4     batchLength            (bytes after this field)
//! 12      4     partitionLeaderEpoch
//! 16      1     magic (2)
//! 17      4     crc                    (CRC32C of bytes 21..end)
//! 21      2     attributes             (bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control)
//! 23      4     lastOffsetDelta
//! 27      8     baseTimestamp          (first timestamp)
//! 35      8     maxTimestamp
//! 43      8     producerId
//! 51      2     producerEpoch
//! 53      4     baseSequence
//! 57      4     recordCount
//! 61      ...   records                (compressed as a whole when the codec is not none)
//! ```
//!
//! In legacy message sets the magic byte sits at the same position (16), which is how the two
//! are told apart.

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;

pub use crate::compression::{Compression, DecompressLimits};

pub mod crc;
mod decode;
mod encode;
mod encoded;
mod legacy;
pub mod varint;

pub use decode::{batches, Batches, DeflatedBatch, InflatedBatch, RecordIter};
pub use encode::{
    encode_control_batch, restamp, restamp_in_place, BatchBuffers, BatchBuilder, Unpooled,
    BY_REFERENCE_MIN, SHARED_VALUE_MIN,
};
pub use encoded::{EncodedBatch, Slices};

/// Length of the v2 batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// Length of the prefix common to every batch and legacy message: offset and length.
pub const LOG_OVERHEAD: usize = 12;

pub(crate) mod layout {
    pub const BASE_OFFSET: usize = 0;
    pub const LENGTH: usize = 8;
    pub const LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const FIRST_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
    pub const RECORDS: usize = 61;
}

/// Attribute bit: timestamps are log-append time (set by the broker).
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: the batch holds a control record.
pub const ATTR_CONTROL: i16 = 0x20;
/// Attribute bit: the batch carries a delete horizon (compaction, KIP-534).
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// "No producer": the producer id, epoch and sequence of a non-idempotent batch.
pub const NO_PRODUCER_ID: i64 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_SEQUENCE: i32 = -1;
/// The partition leader epoch a producer writes (the broker fills in its own).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// One record header: a string key and a nullable value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// The header key (UTF-8; never null on the wire).
    pub key: StrBytes,
    /// The header value (`None` is a null value, distinct from an empty one).
    pub value: Option<Bytes>,
}

impl RecordHeader {
    /// A header from a key and a value.
    pub fn new(key: impl Into<String>, value: Option<Bytes>) -> Self {
        RecordHeader {
            key: StrBytes::from_string(key.into()),
            value,
        }
    }
}

/// One record, as decoded from a batch (or given to [`BatchBuilder::push_record`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Record {
    /// Absolute offset (base offset plus the record's offset delta). Ignored when encoding:
    /// [`BatchBuilder`] assigns consecutive offset deltas.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch: the producer's create time, or the broker's
    /// log-append time when the batch says so ([`TimestampType`]); -1 when unknown (magic 0).
    pub timestamp: i64,
    /// The key (`None` is a null key).
    pub key: Option<Bytes>,
    /// The value (`None` is a null value: a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// The headers, in wire order (keys may repeat).
    pub headers: Vec<RecordHeader>,
}

/// How the timestamps of a batch were assigned (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when appending (`message.timestamp.type=LogAppendTime`); every record
    /// of the batch then carries the batch's max timestamp.
    LogAppendTime,
}

/// What a control record marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordType {
    /// The producer's transaction was aborted: its records before this marker are to be skipped
    /// under `isolation.level=read_committed`.
    Abort,
    /// The producer's transaction was committed.
    Commit,
    /// A type this version of krust does not know (Kafka consumers ignore these).
    Unknown(i16),
}

impl ControlRecordType {
    /// The wire code (0 abort, 1 commit).
    pub fn code(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
            ControlRecordType::Unknown(c) => c,
        }
    }

    /// The type for a wire code.
    pub fn from_code(code: i16) -> Self {
        match code {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            c => ControlRecordType::Unknown(c),
        }
    }
}

/// The control record of a control batch: a transaction marker.
///
/// Key: `version: i16, type: i16`; value (for commit/abort): `version: i16,
/// coordinator_epoch: i32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlRecord {
    /// Version of the control record key.
    pub version: i16,
    /// Commit, abort, or unknown.
    pub kind: ControlRecordType,
    /// Epoch of the transaction coordinator that wrote the marker, when the value carries it.
    pub coordinator_epoch: Option<i32>,
}

/// The header fields of a batch (for legacy messages, the equivalent fields; see each field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchHeader {
    /// Offset of the first record. For a legacy compressed wrapper message: the wrapper's offset,
    /// which is the offset of its *last* inner record.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// The leader epoch the broker stamped (-1 for legacy messages and for batches a producer
    /// builds).
    pub partition_leader_epoch: i32,
    /// 2 for batches, 0 or 1 for legacy messages.
    pub magic: i8,
    /// The stored checksum (CRC32C for v2, CRC32 for legacy), already verified.
    pub crc: u32,
    /// Raw attribute bits.
    pub attributes: i16,
    /// The codec (attribute bits 0-2), validated.
    pub compression: Compression,
    /// Offset of the last record minus `base_offset` (0 for legacy messages).
    pub last_offset_delta: i32,
    /// Timestamp of the first record (legacy v1: the message's timestamp; v0: -1).
    pub first_timestamp: i64,
    /// Largest timestamp of the batch (legacy v1: the message's timestamp; v0: -1).
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records (legacy: 1 for a plain message, -1 for a compressed wrapper, whose
    /// count is known only after inflating).
    pub record_count: i32,
}

impl BatchHeader {
    /// How the timestamps were assigned.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.magic > 0 && self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.magic >= 2 && self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch holds a control record (a transaction marker).
    pub fn is_control(&self) -> bool {
        self.magic >= 2 && self.attributes & ATTR_CONTROL != 0
    }

    /// Offset of the last record of the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset a consumer fetches next after this batch (also after an empty or control
    /// batch, which still occupy their offsets).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Size of the whole batch on the wire, offset and length fields included.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }
}
