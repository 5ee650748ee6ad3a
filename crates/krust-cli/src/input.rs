//! Turning `krust produce`'s stdin into records: one record per line, split into key and value
//! at the first `-K` delimiter, with the `-H` headers on every record.

use std::io::BufRead;

use bytes::Bytes;

use crate::args::{Delimiter, Header};

/// One input line, ready to become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// The key, when `-K` was given and the line contains the delimiter.
    pub key: Option<Bytes>,
    /// The value: the line (after the key and delimiter, if any), without its newline.
    pub value: Bytes,
}

/// Reads `reader` line by line. A trailing `\n` (and a `\r` before it) is removed; empty lines
/// are skipped, as kcat does. Lines may hold any bytes, not only UTF-8.
pub struct LineRecords<R> {
    reader: R,
    delimiter: Option<Delimiter>,
    buf: Vec<u8>,
    /// Empty lines skipped so far.
    pub skipped_empty: u64,
}

impl<R: BufRead> LineRecords<R> {
    /// Records from `reader`, split at `delimiter` if given.
    pub fn new(reader: R, delimiter: Option<Delimiter>) -> Self {
        LineRecords {
            reader,
            delimiter,
            buf: Vec::new(),
            skipped_empty: 0,
        }
    }
}

impl<R: BufRead> Iterator for LineRecords<R> {
    type Item = std::io::Result<InputRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            let mut line = self.buf.as_slice();
            if let Some(l) = line.strip_suffix(b"\n") {
                line = l.strip_suffix(b"\r").unwrap_or(l);
            }
            if line.is_empty() {
                self.skipped_empty += 1;
                continue;
            }
            let (key, value) = match &self.delimiter {
                Some(d) => d.split(line),
                None => (None, line),
            };
            return Some(Ok(InputRecord {
                key: key.map(Bytes::copy_from_slice),
                value: Bytes::copy_from_slice(value),
            }));
        }
    }
}

/// The `-H` headers as (name, value) pairs for a record.
pub fn header_pairs(headers: &[Header]) -> Vec<(String, Option<Bytes>)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                h.value
                    .as_ref()
                    .map(|v| Bytes::copy_from_slice(v.as_bytes())),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(input: &[u8], delim: Option<&str>) -> Vec<InputRecord> {
        LineRecords::new(input, delim.map(|d| d.parse().unwrap()))
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn lines_without_key() {
        let r = records(b"a\nbb\n\nccc", None);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].value, "a");
        assert_eq!(r[2].value, "ccc"); // no final newline
        assert!(r.iter().all(|r| r.key.is_none()));
    }

    #[test]
    fn crlf_and_binary() {
        let r = records(b"x\r\n\xff\x00y\n", None);
        assert_eq!(r[0].value, "x");
        assert_eq!(r[1].value, &b"\xff\x00y"[..]);
    }

    #[test]
    fn keys() {
        let r = records(b"k1:v1\nno-delim\n:empty-key\nk:\n", Some(":"));
        assert_eq!(r[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r[0].value, "v1");
        assert_eq!(r[1].key, None);
        assert_eq!(r[1].value, "no-delim");
        assert_eq!(r[2].key.as_deref(), Some(&b""[..]));
        assert_eq!(r[3].value, "");
    }

    #[test]
    fn counts_skipped_lines() {
        let mut it = LineRecords::new(&b"\n\na\n\n"[..], None);
        assert!(it.next().is_some());
        assert!(it.next().is_none());
        assert_eq!(it.skipped_empty, 3);
    }

    #[test]
    fn headers() {
        let h = header_pairs(&["a=1".parse().unwrap(), "b".parse().unwrap()]);
        assert_eq!(h[0], ("a".to_string(), Some(Bytes::from_static(b"1"))));
        assert_eq!(h[1], ("b".to_string(), None));
    }
}
