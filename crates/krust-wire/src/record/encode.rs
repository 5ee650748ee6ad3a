//! Building v2 record batches.

use bytes::Bytes;

use super::layout::*;
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{
    ControlRecord, Record, RecordHeader, ATTR_CONTROL, ATTR_LOG_APPEND_TIME, ATTR_TRANSACTIONAL,
    BATCH_HEADER_LEN, NO_PARTITION_LEADER_EPOCH,
};
use crate::compression::{self, Compression};
use crate::error::{Error, Result};

fn encode_err(detail: impl Into<String>) -> Error {
    Error::Encode {
        what: "record batch",
        detail: detail.into(),
    }
}

fn len_i32(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| encode_err(format!("{what} of {n} bytes is too long")))
}

/// Builds one v2 record batch.
///
/// ```
/// use krust_wire::record::{batches, BatchBuilder, Compression, RecordHeader};
/// let mut b = BatchBuilder::new(Compression::Lz4);
/// b.push(1_700_000_000_000, Some(b"key"), Some(b"value"), &[RecordHeader::new("h", None)])?;
/// let bytes = b.finish(-1, -1, -1, false)?;
/// let batch = batches(bytes).next().unwrap()?;
/// let rec = batch.inflate()?.into_records()?.remove(0);
/// assert_eq!(rec.value.as_deref(), Some(&b"value"[..]));
/// # Ok::<(), krust_wire::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    base_offset: i64,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    partition_leader_epoch: i32,
    log_append_time: bool,
    control: bool,
    count: i32,
    records: Vec<u8>,
}

impl BatchBuilder {
    /// An empty batch with base offset 0 (what a producer sends: the broker assigns offsets).
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            base_offset: 0,
            base_timestamp: None,
            max_timestamp: -1,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            log_append_time: false,
            control: false,
            count: 0,
            records: Vec::new(),
        }
    }

    /// Sets the base offset (a broker or a fake cluster writing batches into a log).
    pub fn with_base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// Sets the base timestamp, from which record timestamps are stored as deltas. Default: the
    /// first pushed record's timestamp. Only takes effect before the first push.
    pub fn with_base_timestamp(mut self, base_timestamp: i64) -> Self {
        if self.count == 0 {
            self.base_timestamp = Some(base_timestamp);
        }
        self
    }

    /// Sets the partition leader epoch field (default -1, as producers send it).
    pub fn with_partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Marks the timestamps as log-append time (broker side; default: create time).
    pub fn with_log_append_time(mut self, yes: bool) -> Self {
        self.log_append_time = yes;
        self
    }

    /// Reserves room for about `bytes` bytes of encoded records.
    pub fn with_capacity(mut self, bytes: usize) -> Self {
        self.records.reserve(bytes.saturating_add(BATCH_HEADER_LEN));
        self
    }

    /// The encoded records (after the room kept for the batch header).
    fn body(&self) -> &[u8] {
        self.records.get(BATCH_HEADER_LEN..).unwrap_or(&[])
    }

    /// The codec the batch will be compressed with.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Number of records pushed.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if it were finished now, without compression: the header plus the
    /// encoded records. For a compressed batch this is an upper estimate (compression only
    /// shrinks records that compress), which is what `batch.size` accounting wants.
    pub fn estimated_size(&self) -> usize {
        BATCH_HEADER_LEN + self.body().len()
    }

    /// Encoded size of a record with these fields (its length prefix included), to decide
    /// before pushing whether it still fits. Uses the worst case (5 bytes) for the varint
    /// deltas.
    pub fn record_size_upper_bound(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> usize {
        let body =
            1 + 10 + 5 + bytes_field_len(key) + bytes_field_len(value) + headers_len(headers);
        body + 5
    }

    /// Appends a record and returns its offset delta.
    ///
    /// Fails (leaving the builder unchanged) when a field is too long for the format, the
    /// batch already holds `i32::MAX` records, or the timestamp is so far from the base that its
    /// delta overflows.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<i32> {
        let offset_delta = self.count;
        if offset_delta == i32::MAX {
            return Err(encode_err("too many records in one batch"));
        }
        let base = *self.base_timestamp.get_or_insert(timestamp);
        let ts_delta = timestamp
            .checked_sub(base)
            .ok_or_else(|| encode_err("timestamp delta overflows"))?;
        if let Some(k) = key {
            len_i32(k.len(), "key")?;
        }
        if let Some(v) = value {
            len_i32(v.len(), "value")?;
        }
        len_i32(headers.len(), "header count")?;
        for h in headers {
            len_i32(h.key.len(), "header key")?;
            if let Some(v) = &h.value {
                len_i32(v.len(), "header value")?;
            }
        }
        let body = 1
            + varlong_len(ts_delta)
            + varint_len(offset_delta)
            + bytes_field_len(key)
            + bytes_field_len(value)
            + headers_len(headers);
        let body_i32 = len_i32(body, "record")?;
        let out = &mut self.records;
        if out.is_empty() {
            // Room for the batch header, written in place by `finish` (no copy of the records
            // for an uncompressed batch).
            out.resize(BATCH_HEADER_LEN, 0);
        }
        out.reserve(body + 5);
        put_varint(out, body_i32);
        out.push(0); // record attributes: unused
        put_varlong(out, ts_delta);
        put_varint(out, offset_delta);
        put_bytes_field(out, key);
        put_bytes_field(out, value);
        put_varint(out, headers.len() as i32);
        for h in headers {
            put_bytes_field(out, Some(h.key.as_bytes()));
            put_bytes_field(out, h.value.as_deref());
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(offset_delta)
    }

    /// Appends a [`Record`] (its `offset` is ignored) and returns its offset delta.
    pub fn push_record(&mut self, record: &Record) -> Result<i32> {
        self.push(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        )
    }

    /// Compresses the records and writes the complete batch.
    ///
    /// `producer_id`, `producer_epoch` and `base_sequence` are -1 for a non-idempotent producer;
    /// [`restamp`] changes them later without re-encoding. `is_transactional` sets attribute
    /// bit 4. An empty batch is an error (brokers reject them).
    pub fn finish(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        is_transactional: bool,
    ) -> Result<Bytes> {
        if self.count == 0 {
            return Err(encode_err("a batch needs at least one record"));
        }
        let mut out = if self.compression == Compression::None {
            std::mem::take(&mut self.records)
        } else {
            // Compressed straight after the header room: no second copy of the output.
            let mut out = vec![0u8; BATCH_HEADER_LEN];
            compression::compress_append(self.compression, self.body(), &mut out)?;
            out
        };
        let batch_length = len_i32(out.len() - 12, "batch")?;
        let mut attributes = self.compression.code();
        if self.log_append_time {
            attributes |= ATTR_LOG_APPEND_TIME;
        }
        if is_transactional {
            attributes |= ATTR_TRANSACTIONAL;
        }
        if self.control {
            attributes |= ATTR_CONTROL;
        }
        let first_timestamp = self.base_timestamp.unwrap_or(-1);
        let mut h = &mut out[..BATCH_HEADER_LEN];
        let mut put = |bytes: &[u8]| {
            let (head, rest) = std::mem::take(&mut h).split_at_mut(bytes.len());
            head.copy_from_slice(bytes);
            h = rest;
        };
        put(&self.base_offset.to_be_bytes());
        put(&batch_length.to_be_bytes());
        put(&self.partition_leader_epoch.to_be_bytes());
        put(&[2]);
        put(&[0; 4]); // CRC, below
        put(&attributes.to_be_bytes());
        put(&(self.count - 1).to_be_bytes());
        put(&first_timestamp.to_be_bytes());
        put(&self.max_timestamp.to_be_bytes());
        put(&producer_id.to_be_bytes());
        put(&producer_epoch.to_be_bytes());
        put(&base_sequence.to_be_bytes());
        put(&self.count.to_be_bytes());
        debug_assert!(h.is_empty(), "the header fills its 61 bytes exactly");
        let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
        out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(Bytes::from(out))
    }
}

fn bytes_field_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint_len(b.len() as i32) + b.len(),
    }
}

fn headers_len(headers: &[RecordHeader]) -> usize {
    varint_len(headers.len() as i32)
        + headers
            .iter()
            .map(|h| bytes_field_len(Some(h.key.as_bytes())) + bytes_field_len(h.value.as_deref()))
            .sum::<usize>()
}

fn put_bytes_field(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

/// Rewrites the producer id, epoch and base sequence of a built v2 batch in place and
/// recomputes its CRC.
///
/// `batch` must be exactly one v2 batch as [`BatchBuilder::finish`] wrote it (its length field
/// is checked against `batch.len()`).
pub fn restamp_in_place(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<()> {
    if batch.len() < BATCH_HEADER_LEN {
        return Err(encode_err(format!(
            "restamp: {} bytes are shorter than a batch header",
            batch.len()
        )));
    }
    if batch[MAGIC] != 2 {
        return Err(encode_err(format!(
            "restamp: magic {} is not a v2 batch",
            batch[MAGIC]
        )));
    }
    let length = i32::from_be_bytes([
        batch[LENGTH],
        batch[LENGTH + 1],
        batch[LENGTH + 2],
        batch[LENGTH + 3],
    ]);
    if usize::try_from(length).ok() != Some(batch.len() - 12) {
        return Err(encode_err(
            "restamp: batch length field does not match the buffer",
        ));
    }
    batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Returns a copy of a built v2 batch with a new producer id, epoch and base sequence (and CRC).
///
/// Costs one copy of the batch; records are not re-encoded or re-compressed.
pub fn restamp(
    batch: &Bytes,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<Bytes> {
    let mut owned = batch.to_vec();
    restamp_in_place(&mut owned, producer_id, producer_epoch, base_sequence)?;
    Ok(Bytes::from(owned))
}

/// Encodes a control batch holding one transaction marker (what a transaction coordinator
/// writes; for fake clusters and tests).
pub fn encode_control_batch(
    base_offset: i64,
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    marker: ControlRecord,
) -> Result<Bytes> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&marker.version.to_be_bytes());
    key.extend_from_slice(&marker.kind.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.unwrap_or(0).to_be_bytes());
    let mut b = BatchBuilder::new(Compression::None).with_base_offset(base_offset);
    b.control = true;
    b.push(timestamp, Some(&key), Some(&value), &[])?;
    b.finish(producer_id, producer_epoch, -1, true)
}
