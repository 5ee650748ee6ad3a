//! Building v2 record batches.

use bytes::Bytes;

use super::encoded::{EncodedBatch, LeftOut};
use super::layout::*;
use super::varint::{put_varint, varint_len, zigzag32, zigzag64, Staged};
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
    /// Values taken by reference ([`BatchBuilder::push_shared`]): where each goes in `records`
    /// (its bytes are not there yet) and the value, in order; copied in by `finish`.
    shared: LeftOut,
    /// Total length of the `shared` values.
    shared_len: usize,
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
            shared: Vec::new(),
            shared_len: 0,
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

    /// Encodes the records into `buf` (cleared first; its capacity is what counts), for a
    /// caller that recycles buffers (see [`BatchBuffers`]). Only takes effect before the first
    /// push; a buffer given later is dropped.
    pub fn with_buffer(mut self, mut buf: Vec<u8>) -> Self {
        if self.records.is_empty() {
            buf.clear();
            self.records = buf;
        }
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
        BATCH_HEADER_LEN + self.body().len() + self.shared_len
    }

    /// The bytes the builder holds itself: [`BatchBuilder::estimated_size`] without the values
    /// kept by reference ([`BatchBuilder::push_shared`]). What a builder for a similar batch
    /// needs to reserve.
    pub fn inline_size(&self) -> usize {
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
        // Headers too long for the format count as `i32::MAX` bytes: more than any batch takes,
        // so the record is refused by size (as it would be when pushed).
        let headers = headers_size(headers).map_or(i32::MAX as usize, |n| n as usize);
        1 + 10 + 5 + 5 + bytes_field_len(key) + bytes_field_len(value) + headers
    }

    /// Appends a record and returns its offset delta.
    ///
    /// Fails (leaving the builder unchanged) when a field is too long for the format, the
    /// batch already holds `i32::MAX` records, or the timestamp is so far from the base that its
    /// delta overflows.
    #[inline]
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<i32> {
        if let Some(offset_delta) = self.push_short(timestamp, key, value, headers) {
            return Ok(offset_delta);
        }
        self.push_any(timestamp, key, value, headers)
    }

    /// [`BatchBuilder::push`] for the common record: a timestamp delta, offset delta, key and
    /// value length, header count and header lengths whose varints take one or two bytes each
    /// (below 8 KiB; fewer than 64 headers). Nothing can fail then; returns `None`, changing
    /// nothing, for any other record.
    #[inline(always)]
    fn push_short(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Option<i32> {
        let offset_delta = self.count;
        let base = self.base_timestamp.unwrap_or(timestamp);
        let ts_delta = zigzag64(timestamp.checked_sub(base)?);
        let key_len = key.map_or(0, <[u8]>::len);
        let value_len = value.map_or(0, <[u8]>::len);
        // Zig-zag doubles a value that is not negative (a slice length is below 2^63).
        let small = (key_len | value_len | offset_delta as usize) as u64;
        if ts_delta | small << 1 >= SHORT {
            return None;
        }
        let headers_size = if headers.is_empty() {
            1
        } else {
            short_headers_size(headers)?
        };
        let mut lead = Staged::new();
        // Attributes: 0 (already there).
        let at = lead.put_short(Staged::FIRST + 1, ts_delta);
        let at = lead.put_short(at, zigzag32(offset_delta));
        let (mid, end) = match key {
            None => {
                let at = lead.put_u8(at, 1);
                (at, put_short_field_len(&mut lead, at, value, value_len))
            }
            Some(_) => {
                let at = lead.put_short(at, zigzag32(key_len as i32));
                (at, put_short_field_len(&mut lead, at, value, value_len))
            }
        };
        // At most 9 + 2 * 8191 + 1 + 63 * (2 + 8191 + 2 + 8191): fits an i32.
        let body = end - Staged::FIRST + key_len + value_len + headers_size;
        let start = lead.prefix_varint(body as i32);
        self.append_record(&lead, start, mid, end, key, value, headers, body, false);
        self.base_timestamp = Some(base);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Some(offset_delta)
    }

    /// [`BatchBuilder::push`] for any record.
    fn push_any(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<i32> {
        self.push_checked(timestamp, key, value, headers, false)
            .map(|(offset_delta, _)| offset_delta)
    }

    /// Checks and appends any record; returns its offset delta and where its value's bytes
    /// start in `records`, which are left out when `leave_value_out` (see `shared`).
    #[inline(never)]
    fn push_checked(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        leave_value_out: bool,
    ) -> Result<(i32, usize)> {
        let offset_delta = self.count;
        if offset_delta == i32::MAX {
            return Err(too_many_records());
        }
        let base = self.base_timestamp.unwrap_or(timestamp);
        let Some(ts_delta) = timestamp.checked_sub(base) else {
            return Err(timestamp_overflow());
        };
        let key_len = key.map_or(0, <[u8]>::len);
        let value_len = value.map_or(0, <[u8]>::len);
        // Both fit in an i32 iff their bitwise or does.
        if key_len | value_len > I32_MAX {
            return Err(field_too_long(key, value));
        }
        let headers_size = if headers.is_empty() {
            1
        } else {
            headers_size(headers)?
        };
        // The record's leading fields, staged on the stack and copied in once: attributes,
        // timestamp delta, offset delta, the key's length, the value's length (copied after
        // the key when there is one).
        let mut lead = Staged::new();
        // Attributes: 0 (already there).
        let at = Staged::FIRST + 1;
        let at = lead.put_uvarint(at, zigzag64(ts_delta));
        let at = lead.put_uvarint(at, zigzag32(offset_delta));
        let (mid, end) = match key {
            None => {
                let at = lead.put_u8(at, 1);
                (at, put_field_len(&mut lead, at, value, value_len))
            }
            Some(_) => {
                let at = lead.put_uvarint(at, zigzag32(key_len as i32));
                (at, put_field_len(&mut lead, at, value, value_len))
            }
        };
        // At most 26 + 2 * (2^31 - 1) + 2^63: no overflow.
        let staged = end - Staged::FIRST;
        let body = staged as u64 + key_len as u64 + value_len as u64 + headers_size;
        if body > I32_MAX as u64 {
            return Err(record_too_long(body));
        }
        let start = lead.prefix_varint(body as i32);
        let value_at = self.append_record(
            &lead,
            start,
            mid,
            end,
            key,
            value,
            headers,
            body as usize,
            leave_value_out,
        );
        self.base_timestamp = Some(base);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok((offset_delta, value_at))
    }

    /// Appends a checked record: its staged leading fields (`start..mid`, then `mid..end`
    /// after the key), key, value (unless `leave_value_out`) and headers; `body` is its length
    /// without the prefix. Returns where the value's bytes start.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn append_record(
        &mut self,
        lead: &Staged,
        start: usize,
        mid: usize,
        end: usize,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        body: usize,
        leave_value_out: bool,
    ) -> usize {
        let out = &mut self.records;
        if out.is_empty() {
            // Room for the batch header, written in place by `finish` (no copy of the records
            // for an uncompressed batch).
            out.resize(BATCH_HEADER_LEN, 0);
        }
        let left_out = match value {
            Some(v) if leave_value_out => v.len(),
            _ => 0,
        };
        out.reserve(Staged::FIRST - start + body - left_out);
        if let Some(k) = key {
            lead.append(start, mid, out);
            out.extend_from_slice(k);
            lead.append(mid, end, out);
        } else {
            lead.append(start, end, out);
        }
        let value_at = out.len();
        if let Some(v) = value.filter(|_| !leave_value_out) {
            out.extend_from_slice(v);
        }
        if headers.is_empty() {
            out.push(0);
        } else {
            put_headers(out, headers);
        }
        value_at
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

    /// [`BatchBuilder::push`] for a value the caller owns as [`Bytes`]: in an uncompressed
    /// batch a value of at least [`SHARED_VALUE_MIN`] bytes is kept by reference and copied
    /// into the batch by [`BatchBuilder::finish`], right before the batch is checksummed and
    /// written out (a large batch built over milliseconds would otherwise be read back from
    /// beyond the cache); any other value is copied at once and handed back, for the caller to
    /// release when it suits it. The output bytes are the same either way.
    pub fn push_shared(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<Bytes>,
        headers: &[RecordHeader],
    ) -> Result<(i32, Option<Bytes>)> {
        match value {
            Some(v) if v.len() >= SHARED_VALUE_MIN && self.compression == Compression::None => {
                let (offset_delta, at) =
                    self.push_checked(timestamp, key, Some(&v), headers, true)?;
                self.shared_len += v.len();
                self.shared.push((at, v));
                Ok((offset_delta, None))
            }
            v => Ok((self.push(timestamp, key, v.as_deref(), headers)?, v)),
        }
    }

    /// `records` with the values kept by reference copied into their places, except those of
    /// at least `by_reference_min` bytes, which are returned with where they go instead; and
    /// the CRC-32C of the whole from [`ATTRIBUTES`] on (whose header must be written already).
    /// One pass: each stretch copied is checksummed while it is still in the cache, and each
    /// value left out is checksummed where it lies.
    fn take_records_checksummed(
        &mut self,
        buffers: &mut impl BatchBuffers,
        by_reference_min: usize,
    ) -> (Vec<u8>, LeftOut, u32) {
        let records = std::mem::take(&mut self.records);
        let shared = std::mem::take(&mut self.shared);
        self.shared_len = 0;
        let copied: usize = shared
            .iter()
            .map(|(_, v)| v.len())
            .filter(|n| *n < by_reference_min)
            .sum();
        if copied == 0 {
            // Nothing to copy in: the builder's buffer is the batch's.
            let crc = super::encoded::checksum_split(&records, &shared);
            return (records, shared, crc);
        }
        let mut out = buffers.take(records.len() + copied);
        let mut ahead = WriteAhead::default();
        let mut split = Vec::new();
        let (mut from, mut summed, mut crc) = (0, ATTRIBUTES, 0);
        for (i, (at, value)) in shared.iter().enumerate() {
            ahead.reach(&mut out);
            // Each value is an allocation of its own, often written by another thread: its
            // address is nothing the hardware can guess, so ask for it a few values early.
            if let Some((_, next)) = shared.get(i + READ_AHEAD_VALUES) {
                crate::hint::prefetch_read(&next[..next.len().min(READ_AHEAD_MAX)]);
            }
            out.extend_from_slice(&records[from..*at]);
            from = *at;
            if value.len() >= by_reference_min {
                crc = super::crc::crc32c_append(crc, &out[summed..]);
                crc = super::crc::crc32c_append(crc, value);
                summed = out.len();
                split.push((out.len(), value.clone()));
                continue;
            }
            out.extend_from_slice(value);
            if out.len() - summed >= CRC_STRETCH {
                crc = super::crc::crc32c_append(crc, &out[summed..]);
                summed = out.len();
            }
        }
        out.extend_from_slice(&records[from..]);
        crc = super::crc::crc32c_append(crc, &out[summed..]);
        // Released together after the copy (clones of one `Bytes` share a count that another
        // thread may be changing: one stretch of changes, not one between every copy).
        drop(shared);
        buffers.give(records);
        (out, split, crc)
    }

    /// Writes the batch header, CRC field zero, into `out` (its first [`BATCH_HEADER_LEN`]
    /// bytes), for a batch whose bytes after the length field number `batch_length`.
    fn write_header(
        &self,
        out: &mut [u8],
        batch_length: i32,
        producer: (i64, i16, i32),
        is_transactional: bool,
    ) {
        let (producer_id, producer_epoch, base_sequence) = producer;
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
        put(&[0; 4]); // CRC, written last
        put(&attributes.to_be_bytes());
        put(&(self.count - 1).to_be_bytes());
        put(&first_timestamp.to_be_bytes());
        put(&self.max_timestamp.to_be_bytes());
        put(&producer_id.to_be_bytes());
        put(&producer_epoch.to_be_bytes());
        put(&base_sequence.to_be_bytes());
        put(&self.count.to_be_bytes());
        debug_assert!(h.is_empty(), "the header fills its 61 bytes exactly");
    }

    /// Compresses the records and writes the complete batch.
    ///
    /// `producer_id`, `producer_epoch` and `base_sequence` are -1 for a non-idempotent producer;
    /// [`restamp`] changes them later without re-encoding. `is_transactional` sets attribute
    /// bit 4. An empty batch is an error (brokers reject them).
    pub fn finish(
        self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        is_transactional: bool,
    ) -> Result<Bytes> {
        self.finish_with(
            producer_id,
            producer_epoch,
            base_sequence,
            is_transactional,
            &mut Unpooled,
        )
        .map(Bytes::from)
    }

    /// [`BatchBuilder::finish_with`] that leaves the values kept by reference
    /// ([`BatchBuilder::push_shared`]) of at least [`BY_REFERENCE_MIN`] bytes out of the
    /// batch's buffer: they are written from where they lie, between the buffer's stretches
    /// ([`EncodedBatch::slices`]), and the checksum reads them there. Smaller values are copied
    /// in as by `finish_with`; a batch with no such large value is one buffer. The bytes are
    /// the same either way.
    pub fn finish_encoded(
        self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        is_transactional: bool,
        buffers: &mut impl BatchBuffers,
    ) -> Result<EncodedBatch> {
        let producer = (producer_id, producer_epoch, base_sequence);
        let (out, values) =
            self.finish_parts(producer, is_transactional, buffers, BY_REFERENCE_MIN)?;
        Ok(EncodedBatch::split(buffers.freeze(out), values))
    }

    /// [`BatchBuilder::finish`] into a buffer from `buffers`, to which the buffers it no
    /// longer needs go back; the same bytes. A caller that recycles batches this way avoids
    /// fresh pages for every batch (an allocator hands large blocks back to the system and
    /// maps them again, each page a fault and a clearing).
    pub fn finish_with(
        self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        is_transactional: bool,
        buffers: &mut impl BatchBuffers,
    ) -> Result<Vec<u8>> {
        let producer = (producer_id, producer_epoch, base_sequence);
        self.finish_parts(producer, is_transactional, buffers, usize::MAX)
            .map(|(out, _)| out)
    }

    /// The finished batch's buffer, and the values of at least `by_reference_min` bytes left
    /// out of it (uncompressed batches only) with where they go.
    fn finish_parts(
        mut self,
        producer: (i64, i16, i32),
        is_transactional: bool,
        buffers: &mut impl BatchBuffers,
        by_reference_min: usize,
    ) -> Result<(Vec<u8>, LeftOut)> {
        if self.count == 0 {
            return Err(encode_err("a batch needs at least one record"));
        }
        let (mut out, values, crc) = if self.compression == Compression::None {
            // The header goes in its room first, so the checksum can follow the copy of the
            // values kept by reference.
            let batch_length = len_i32(self.records.len() + self.shared_len - 12, "batch")?;
            let mut header = [0u8; BATCH_HEADER_LEN];
            self.write_header(&mut header, batch_length, producer, is_transactional);
            self.records[..BATCH_HEADER_LEN].copy_from_slice(&header);
            self.take_records_checksummed(buffers, by_reference_min)
        } else {
            // Compressed straight after the header room: no second copy of the output. (A
            // compressing builder keeps no values by reference.)
            debug_assert!(
                self.shared.is_empty(),
                "values by reference in a compressed batch"
            );
            let records = std::mem::take(&mut self.records);
            let body = records.get(BATCH_HEADER_LEN..).unwrap_or(&[]);
            // Its size is not known before compressing: the codec grows it.
            let mut out = vec![0u8; BATCH_HEADER_LEN];
            let compressed = compression::compress_append(self.compression, body, &mut out);
            buffers.give(records);
            compressed?;
            let batch_length = len_i32(out.len() - 12, "batch")?;
            self.write_header(&mut out, batch_length, producer, is_transactional);
            let crc = super::crc::crc32c(&out[ATTRIBUTES..]);
            (out, Vec::new(), crc)
        };
        out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Ok((out, values))
    }
}

/// Where [`BatchBuilder::finish_with`] takes the buffers it writes into and gives back the ones
/// it has done with: a pool, for a producer that builds batches one after another.
pub trait BatchBuffers {
    /// An empty buffer with room for at least `capacity` bytes.
    fn take(&mut self, capacity: usize) -> Vec<u8>;
    /// A buffer no longer needed (its contents are of no further use).
    fn give(&mut self, buf: Vec<u8>);
    /// A finished batch's buffer as [`Bytes`] (by default plainly; a pool can take the buffer
    /// back once the last clone is dropped).
    fn freeze(&mut self, buf: Vec<u8>) -> Bytes {
        Bytes::from(buf)
    }
}

/// [`BatchBuffers`] that allocates every buffer and drops what it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpooled;

impl BatchBuffers for Unpooled {
    fn take(&mut self, capacity: usize) -> Vec<u8> {
        Vec::with_capacity(capacity)
    }

    fn give(&mut self, _buf: Vec<u8>) {}
}

/// Claims the cache lines of a batch buffer a little ahead of the copy that fills it (see
/// [`crate::hint`]): a reused buffer was last read by the kernel's copy on the connection's
/// core, and a store to each of its lines would otherwise wait for that core's copy to be
/// invalidated, one line after another.
#[derive(Default)]
struct WriteAhead {
    /// Offset in the buffer up to which lines have been claimed.
    claimed: usize,
}

impl WriteAhead {
    /// How far ahead of the copy lines are claimed: enough round trips in flight to hide one
    /// between dies, not so many that the lines fall out of the first-level cache before use.
    const DISTANCE: usize = 4096;

    /// Claims the lines of `out`'s spare room up to [`WriteAhead::DISTANCE`] past its length.
    #[inline]
    fn reach(&mut self, out: &mut Vec<u8>) {
        let len = out.len();
        let until = (len + Self::DISTANCE).min(out.capacity());
        let mut at = self.claimed.max(len);
        if at >= until {
            return;
        }
        let spare = out.spare_capacity_mut();
        while at < until {
            crate::hint::prefetch_write(&spare[at - len]);
            at += crate::hint::LINE;
        }
        self.claimed = at;
    }
}

/// How many values ahead of its copy [`BatchBuilder::finish`] asks for a value kept by
/// reference to be brought into the cache.
const READ_AHEAD_VALUES: usize = 2;

/// Most bytes of one value asked for ahead (past them, the hardware follows a sequential read
/// by itself).
const READ_AHEAD_MAX: usize = 4096;

/// How many copied bytes [`BatchBuilder::finish`] checksums at a time: small enough to be read
/// back from the first-level cache, large enough for the checksum's own start-up to vanish.
const CRC_STRETCH: usize = 16 * 1024;

/// Smallest value [`BatchBuilder::push_shared`] keeps by reference until `finish` (smaller
/// ones cost less to copy at once than to keep and copy later).
pub const SHARED_VALUE_MIN: usize = 512;

/// Smallest value [`BatchBuilder::finish_encoded`] leaves out of the batch's buffer, to be
/// written from where it lies. Smaller ones cost less to copy in (one pass that stays in the
/// cache) than to send as slices of their own: a 1 KiB value as its own slice made the
/// producer's CPU per record a fifth higher; from 4 KiB on, leaving values out is the cheaper.
pub const BY_REFERENCE_MIN: usize = 4096;

/// `i32::MAX` as a length.
const I32_MAX: usize = i32::MAX as usize;

/// Zig-zag values below this take one or two varint bytes.
const SHORT: u64 = 1 << 14;

fn bytes_field_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint_len(b.len() as i32) + b.len(),
    }
}

/// Stages a nullable bytes field's length (-1 for null) at `at`, returning the position after; `len` is the field's length, checked
/// to fit an `i32`.
#[inline(always)]
fn put_field_len(stage: &mut Staged, at: usize, b: Option<&[u8]>, len: usize) -> usize {
    match b {
        None => stage.put_u8(at, 1),
        Some(_) => stage.put_uvarint(at, zigzag32(len as i32)),
    }
}

/// Stages a nullable bytes field's length like [`put_field_len`], for a length below 8 KiB.
#[inline(always)]
fn put_short_field_len(stage: &mut Staged, at: usize, b: Option<&[u8]>, len: usize) -> usize {
    match b {
        None => stage.put_u8(at, 1),
        Some(_) => stage.put_short(at, zigzag32(len as i32)),
    }
}

/// Encoded size of the header count and headers when the count is below 64 and every length
/// below 8 KiB (so each varint takes one or two bytes, and nothing needs checking); else `None`.
#[inline(never)]
fn short_headers_size(headers: &[RecordHeader]) -> Option<usize> {
    if headers.len() >= 64 {
        return None;
    }
    // Zig-zag doubles a length: 1 byte below 64, 2 below 8192.
    let len = |n: usize| 1 + usize::from(n >= 64) + n;
    let mut size = 1;
    for h in headers {
        let key = h.key.len();
        let value = h.value.as_ref().map_or(0, Bytes::len);
        if key | value >= 8192 {
            return None;
        }
        size += len(key) + h.value.as_ref().map_or(1, |_| len(value));
    }
    Some(size)
}

/// Encoded size of the header count and headers, checking that every length fits an `i32`.
fn headers_size(headers: &[RecordHeader]) -> Result<u64> {
    len_i32(headers.len(), "header count")?;
    let mut size = varint_len(headers.len() as i32) as u64;
    for h in headers {
        let key = len_i32(h.key.len(), "header key")?;
        size += (varint_len(key) + h.key.len()) as u64;
        size += match &h.value {
            None => 1,
            Some(v) => (varint_len(len_i32(v.len(), "header value")?) + v.len()) as u64,
        };
    }
    Ok(size)
}

fn put_headers(out: &mut Vec<u8>, headers: &[RecordHeader]) {
    put_varint(out, headers.len() as i32);
    for h in headers {
        put_bytes_field(out, Some(h.key.as_bytes()));
        put_bytes_field(out, h.value.as_deref());
    }
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

#[cold]
#[inline(never)]
fn too_many_records() -> Error {
    encode_err("too many records in one batch")
}

#[cold]
#[inline(never)]
fn timestamp_overflow() -> Error {
    encode_err("timestamp delta overflows")
}

/// The error for a key or a value longer than `i32::MAX` (the key is named first, as it comes
/// first in the record).
#[cold]
#[inline(never)]
fn field_too_long(key: Option<&[u8]>, value: Option<&[u8]>) -> Error {
    let (what, n) = match key {
        Some(k) if k.len() > I32_MAX => ("key", k.len()),
        _ => ("value", value.map_or(0, <[u8]>::len)),
    };
    encode_err(format!("{what} of {n} bytes is too long"))
}

#[cold]
#[inline(never)]
fn record_too_long(body: u64) -> Error {
    encode_err(format!("record of {body} bytes is too long"))
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
    let len = batch.len();
    stamp_producer(batch, len, (producer_id, producer_epoch, base_sequence))?;
    let crc = super::crc::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Writes the producer id, epoch and base sequence into `header`, the start of a v2 batch of
/// `len` bytes (its magic and length field are checked first). The CRC is left to the caller.
pub(crate) fn stamp_producer(
    header: &mut [u8],
    len: usize,
    (producer_id, producer_epoch, base_sequence): (i64, i16, i32),
) -> Result<()> {
    if header.len() < BATCH_HEADER_LEN {
        return Err(encode_err(format!(
            "restamp: {} bytes are shorter than a batch header",
            header.len()
        )));
    }
    if header[MAGIC] != 2 {
        return Err(encode_err(format!(
            "restamp: magic {} is not a v2 batch",
            header[MAGIC]
        )));
    }
    let mut length = [0u8; 4];
    length.copy_from_slice(&header[LENGTH..LENGTH + 4]);
    if usize::try_from(i32::from_be_bytes(length)).ok() != len.checked_sub(12) {
        return Err(encode_err(
            "restamp: batch length field does not match the buffer",
        ));
    }
    header[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    header[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
    header[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim runs `DISTANCE` ahead of the length, never past the capacity, and leaves the
    /// buffer as it was.
    #[test]
    fn write_ahead_claims_within_the_spare_room() {
        use crate::hint::LINE;
        let mut out = Vec::with_capacity(10_000);
        let cap = out.capacity();
        let mut ahead = WriteAhead::default();
        let mut claimed_past = |out: &mut Vec<u8>, len: usize, fill: u8| {
            out.resize(len, fill);
            ahead.reach(out);
            let again = ahead.claimed;
            ahead.reach(out);
            assert_eq!(ahead.claimed, again, "the same length claims nothing more");
            ahead.claimed
        };
        for len in [0, 10, 100, 3000] {
            let claimed = claimed_past(&mut out, len, 1);
            let want = len + WriteAhead::DISTANCE;
            assert!((want..want + LINE).contains(&claimed), "{len}: {claimed}");
        }
        // Near the end: up to the capacity, not past it.
        let claimed = claimed_past(&mut out, cap - 10, 2);
        assert!((cap..cap + LINE).contains(&claimed), "{claimed}");
        assert_eq!(claimed_past(&mut out, cap, 3), claimed);
        assert_eq!(out.len(), cap);
        assert!(out[..3000].iter().all(|&b| b == 1));
        assert!(out[3000..cap - 10].iter().all(|&b| b == 2));
        assert!(out[cap - 10..].iter().all(|&b| b == 3));
    }

    /// `push_shared` gives the same batch, byte for byte, as `push` with the same records:
    /// values below and above `SHARED_VALUE_MIN` (kept by reference), keys, headers, null and
    /// empty values, uncompressed and compressed; the estimated size agrees while building.
    #[test]
    fn values_pushed_shared_give_the_same_batch() {
        let big = |n: usize, b: u8| Bytes::from(vec![b; n]);
        let values: Vec<Option<Bytes>> = vec![
            Some(big(SHARED_VALUE_MIN, 1)),
            None,
            Some(Bytes::new()),
            Some(big(SHARED_VALUE_MIN - 1, 2)),
            Some(big(5000, 3)),
            Some(big(20_000, 4)),
            Some(big(100, 5)),
            Some(big(SHARED_VALUE_MIN + 1, 6)),
        ];
        for codec in [Compression::None, Compression::Lz4] {
            let mut plain = BatchBuilder::new(codec);
            let mut shared = BatchBuilder::new(codec);
            for (i, v) in values.iter().enumerate() {
                let key = (i % 2 == 1).then(|| format!("key{i}"));
                let headers = if i % 3 == 0 {
                    vec![
                        RecordHeader::new("h", Some(Bytes::from(format!("{i}")))),
                        RecordHeader::new("n", None),
                    ]
                } else {
                    Vec::new()
                };
                let ts = 1_700_000_000_000 + 7 * i as i64 - 3;
                let a = plain.push(
                    ts,
                    key.as_deref().map(str::as_bytes),
                    v.as_deref(),
                    &headers,
                );
                let (b, back) = shared
                    .push_shared(ts, key.as_deref().map(str::as_bytes), v.clone(), &headers)
                    .unwrap();
                assert_eq!(a.unwrap(), b);
                let kept = codec == Compression::None
                    && v.as_ref().is_some_and(|v| v.len() >= SHARED_VALUE_MIN);
                assert_eq!(
                    back,
                    if kept { None } else { v.clone() },
                    "copied values come back"
                );
                assert_eq!(plain.estimated_size(), shared.estimated_size());
                assert!(shared.inline_size() <= plain.inline_size());
            }
            if codec == Compression::None {
                assert_eq!(
                    shared.shared.len(),
                    4,
                    "the values of 512 B and more are kept"
                );
            } else {
                assert!(
                    shared.shared.is_empty(),
                    "a compressed batch copies at once"
                );
            }
            let a = plain.finish(9, 1, 100, true).unwrap();
            let b = shared.finish(9, 1, 100, true).unwrap();
            assert_eq!(a, b, "{codec}");
        }
    }

    /// A batch of many values kept by reference is checksummed a stretch at a time while it
    /// is copied: the bytes equal those of `push`, and the decoder's CRC check passes.
    #[test]
    fn a_long_shared_batch_checksums_as_it_copies() {
        let mut plain = BatchBuilder::new(Compression::None);
        let mut shared = BatchBuilder::new(Compression::None);
        for i in 0..300u32 {
            let len = SHARED_VALUE_MIN + (i as usize * 37) % 1500;
            let v = Bytes::from(
                (0..len)
                    .map(|j| (i as usize * 7 + j) as u8)
                    .collect::<Vec<_>>(),
            );
            let key = i.to_be_bytes();
            plain
                .push(1_000 + i64::from(i), Some(&key), Some(&v), &[])
                .unwrap();
            let (_, back) = shared
                .push_shared(1_000 + i64::from(i), Some(&key), Some(v), &[])
                .unwrap();
            assert!(back.is_none());
        }
        assert!(shared.estimated_size() > 10 * CRC_STRETCH);
        let a = plain.finish(3, 0, 7, false).unwrap();
        let b = shared.finish(3, 0, 7, false).unwrap();
        assert_eq!(a, b);
        let batch = crate::record::batches(b).next().unwrap().unwrap();
        let records = batch.inflate().unwrap().into_records().unwrap();
        assert_eq!(records.len(), 300);
        assert_eq!(records[299].key.as_deref(), Some(&299u32.to_be_bytes()[..]));
    }

    /// Appends `v` zig-zag encoded, seven bits at a time, low group first (the plain textbook
    /// loop, independent of `varint.rs`). Zig-zag of an `i32` equals zig-zag of the same value
    /// as an `i64`, so this serves varints and varlongs alike.
    fn ref_varlong(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let low = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(low);
                return;
            }
            out.push(low | 0x80);
        }
    }

    fn ref_field(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => ref_varlong(out, -1),
            Some(b) => {
                ref_varlong(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// One record as the v2 format defines it: length, attributes, timestamp delta, offset
    /// delta, key, value, header count and headers.
    fn ref_record(
        out: &mut Vec<u8>,
        ts_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) {
        let mut body = vec![0u8];
        ref_varlong(&mut body, ts_delta);
        ref_varlong(&mut body, i64::from(offset_delta));
        ref_field(&mut body, key);
        ref_field(&mut body, value);
        ref_varlong(&mut body, headers.len() as i64);
        for h in headers {
            ref_field(&mut body, Some(h.key.as_bytes()));
            ref_field(&mut body, h.value.as_deref());
        }
        ref_varlong(out, body.len() as i64);
        out.extend_from_slice(&body);
    }

    /// A builder and the reference encoding of what was pushed into it, kept side by side.
    struct Twin {
        b: BatchBuilder,
        base: Option<i64>,
        expected: Vec<u8>,
    }

    impl Twin {
        fn new(base: Option<i64>) -> Self {
            let mut b = BatchBuilder::new(Compression::None);
            if let Some(base) = base {
                b = b.with_base_timestamp(base);
            }
            Twin {
                b,
                base,
                expected: Vec::new(),
            }
        }

        fn push(
            &mut self,
            ts: i64,
            key: Option<&[u8]>,
            value: Option<&[u8]>,
            headers: &[RecordHeader],
        ) {
            let offset_delta = self.b.len() as i32;
            let base = *self.base.get_or_insert(ts);
            ref_record(
                &mut self.expected,
                ts - base,
                offset_delta,
                key,
                value,
                headers,
            );
            assert_eq!(self.b.push(ts, key, value, headers).unwrap(), offset_delta);
        }

        /// The records must match byte for byte, also once the batch is finished.
        fn check(self) {
            assert_eq!(self.b.body().len(), self.expected.len());
            if let Some(at) = (self.b.body().iter())
                .zip(&self.expected)
                .position(|(a, b)| a != b)
            {
                panic!("first differing byte at {at} of the records");
            }
            let batch = self.b.finish(-1, -1, -1, false).unwrap();
            assert!(batch[BATCH_HEADER_LEN..] == self.expected[..]);
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + 7) as u8).collect()
    }

    /// Lengths around every varint width boundary of a length and of a record length
    /// (zig-zag: 63/64, 8191/8192, 1048575/1048576; the record adds a few bytes).
    fn boundary_lengths() -> Vec<usize> {
        let mut v: Vec<usize> = (0..=140).collect();
        v.extend(8170..=8200);
        v.extend(16370..=16390);
        v.extend(1_048_560..=1_048_580);
        v
    }

    /// Timestamp deltas at every width boundary of a zig-zag varlong (1 to 10 bytes).
    fn boundary_deltas() -> Vec<i64> {
        let mut v = vec![0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1];
        for bits in (6..63).step_by(7) {
            let edge = 1i64 << bits;
            v.extend([edge - 1, edge, edge + 1, -edge, -edge - 1, -edge + 1]);
        }
        v
    }

    #[test]
    fn values_of_every_boundary_length_match_the_reference() {
        let max = *boundary_lengths().last().unwrap();
        let data = pattern(max);
        let mut keyless = Twin::new(None);
        let mut keyed = Twin::new(None);
        for (i, n) in boundary_lengths().into_iter().enumerate() {
            let ts = 1_700_000_000_000 + i as i64 * 3;
            keyless.push(ts, None, Some(&data[..n]), &[]);
            keyed.push(ts, Some(&data[n % 17..n % 17 + 9]), Some(&data[..n]), &[]);
        }
        keyless.check();
        keyed.check();
    }

    #[test]
    fn keys_and_header_fields_of_every_boundary_length_match_the_reference() {
        let lengths: Vec<usize> = boundary_lengths()
            .into_iter()
            .filter(|&n| n < 20_000)
            .collect();
        let data = pattern(20_000);
        let mut t = Twin::new(None);
        for (i, &n) in lengths.iter().enumerate() {
            let ts = 5_000 - i as i64;
            let field = &data[..n];
            t.push(ts, Some(field), None, &[]);
            t.push(ts, Some(field), Some(&data[..i % 3]), &[]);
            let key = String::from_utf8(vec![b'k'; n]).unwrap();
            let headers = [
                RecordHeader::new(key, Some(Bytes::copy_from_slice(field))),
                RecordHeader::new("", None),
                RecordHeader::new("e", Some(Bytes::new())),
            ];
            t.push(ts, None, Some(field), &headers);
            t.push(ts, Some(&[]), None, &headers[..1]);
        }
        t.check();
    }

    #[test]
    fn every_boundary_timestamp_delta_matches_the_reference() {
        let mut t = Twin::new(Some(0));
        for d in boundary_deltas() {
            t.push(d, None, Some(b"v"), &[]);
            t.push(d, Some(b""), Some(b""), &[]);
        }
        t.check();
        // A base in the middle: the first record sets it; later ones go either way.
        let mut t = Twin::new(None);
        let base = 1_700_000_000_000i64;
        t.push(base, None, None, &[]);
        for d in boundary_deltas() {
            if let Some(ts) = base
                .checked_add(d)
                .filter(|ts| ts.checked_sub(base).is_some())
            {
                t.push(ts, None, None, &[]);
            }
        }
        t.check();
    }

    #[test]
    fn offset_deltas_and_header_counts_across_their_boundaries_match_the_reference() {
        let mut t = Twin::new(None);
        for i in 0..8_300i64 {
            let value = (i % 5 != 0).then_some(&b"payload"[..(i % 8) as usize]);
            t.push(100 + i % 70, None, value, &[]);
        }
        t.check();
        let mut t = Twin::new(None);
        for count in [0usize, 1, 2, 63, 64, 65, 200] {
            let headers: Vec<RecordHeader> = (0..count)
                .map(|i| RecordHeader::new(format!("h{i}"), (i % 2 == 0).then(|| Bytes::from("x"))))
                .collect();
            t.push(7, Some(b"k"), Some(b"v"), &headers);
        }
        t.check();
    }

    #[test]
    fn a_failed_push_leaves_the_builder_unchanged() {
        let mut b = BatchBuilder::new(Compression::None).with_base_timestamp(i64::MIN);
        b.push(i64::MIN, None, Some(b"a"), &[]).unwrap();
        let before = b.body().to_vec();
        let err = b.push(i64::MAX, None, Some(b"b"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("timestamp delta overflows"),
            "{err}"
        );
        assert_eq!(b.body(), &before[..]);
        assert_eq!(b.len(), 1);
        assert_eq!(b.push(i64::MIN + 1, None, Some(b"c"), &[]).unwrap(), 1);
    }

    /// A key, a value and the error they must give.
    type Oversized<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, &'a str);

    #[test]
    fn oversized_fields_are_refused_and_leave_no_trace() {
        // (The record: 2^30 + 2^30 bytes of key and value, 5 + 5 for their lengths, 4 for
        // attributes, deltas and header count: 2^31 + 14.)
        // 2 GiB of zeroes: calloc maps them lazily, so no page is touched (every check comes
        // before any copy).
        let big = vec![0u8; 1 << 31];
        let half = &big[..1 << 30];
        let mut b = BatchBuilder::new(Compression::None);
        let cases: [Oversized; 3] = [
            (None, Some(&big), "value of 2147483648 bytes is too long"),
            (
                Some(&big),
                Some(b"v"),
                "key of 2147483648 bytes is too long",
            ),
            (
                Some(half),
                Some(half),
                "record of 2147483662 bytes is too long",
            ),
        ];
        for (key, value, message) in cases {
            let err = b.push(5, key, value, &[]).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            assert!(b.is_empty() && b.records.is_empty());
        }
        let headers = [RecordHeader::new("h", Some(Bytes::from(big)))];
        let err = b.push(5, None, None, &headers).unwrap_err();
        assert!(
            err.to_string()
                .contains("header value of 2147483648 bytes is too long"),
            "{err}"
        );
        assert!(b.is_empty() && b.records.is_empty());
        // The failed pushes did not fix the base timestamp: the batch is the same as one that
        // only ever saw this record.
        b.push(10, None, Some(b"x"), &[]).unwrap();
        let mut fresh = BatchBuilder::new(Compression::None);
        fresh.push(10, None, Some(b"x"), &[]).unwrap();
        assert_eq!(
            b.finish(-1, -1, -1, false).unwrap(),
            fresh.finish(-1, -1, -1, false).unwrap()
        );
    }
}
