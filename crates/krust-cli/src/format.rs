//! The `consume -f FORMAT` engine: kcat-style format strings, parsed once into a list of parts
//! and rendered per record into raw bytes (keys and values may be binary, so no `String`).
//!
//! Tokens: `%t` topic, `%p` partition, `%o` offset, `%k` key, `%K` key length, `%s` value,
//! `%S` value length, `%T` timestamp in ms, `%h` headers as `name=value` joined by `,`, `%%` a
//! literal `%`. Escapes: `\n`, `\r`, `\t`, `\0`, `\\`. A null key, value or header value prints
//! as nothing, and its length as `-1`; a missing timestamp prints as `-1`. Anything else after
//! `%` or `\` is an error that names it, so a typo never silently prints garbage.

use std::fmt;

/// A field of a record that a format token prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `%t`: the topic name.
    Topic,
    /// `%p`: the partition number.
    Partition,
    /// `%o`: the record's offset.
    Offset,
    /// `%k`: the key bytes.
    Key,
    /// `%K`: the key length in bytes, `-1` for a null key.
    KeyLen,
    /// `%s`: the value bytes.
    Value,
    /// `%S`: the value length in bytes, `-1` for a null value.
    ValueLen,
    /// `%T`: the record timestamp in milliseconds since the epoch, `-1` if unknown.
    Timestamp,
    /// `%h`: the headers, `name=value` pairs joined by `,`.
    Headers,
}

/// One piece of a parsed format: literal bytes or a record field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes printed as they are.
    Literal(Vec<u8>),
    /// A record field.
    Field(Field),
}

/// A parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    parts: Vec<Part>,
}

/// Why a format string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `%` followed by a character that is not a token.
    UnknownToken(char),
    /// `\` followed by a character that is not an escape.
    UnknownEscape(char),
    /// The string ends in a lone `%` or `\`.
    Dangling(char),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::UnknownToken(c) => write!(
                f,
                "unknown format token '%{c}' (known: %t %p %o %k %K %s %S %T %h %%)"
            ),
            FormatError::UnknownEscape(c) => {
                write!(f, "unknown escape '\\{c}' (known: \\n \\r \\t \\0 \\\\)")
            }
            FormatError::Dangling(c) => write!(f, "format ends with a lone '{c}'"),
        }
    }
}

impl std::error::Error for FormatError {}

/// A record as the formatter sees it: borrowed views, so rendering copies nothing it need not.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition number.
    pub partition: i32,
    /// Offset of the record.
    pub offset: i64,
    /// Timestamp in ms since the epoch, if the record has one.
    pub timestamp: Option<i64>,
    /// Key, `None` when null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` when null.
    pub value: Option<&'a [u8]>,
    /// Headers in record order; a `None` value is a null header value.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl Default for Format {
    /// kcat's default: the value followed by a newline.
    fn default() -> Self {
        Format {
            parts: vec![Part::Field(Field::Value), Part::Literal(b"\n".to_vec())],
        }
    }
}

impl Format {
    /// Parses a kcat-style format string.
    pub fn parse(spec: &str) -> Result<Format, FormatError> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut chars = spec.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let next = chars.next().ok_or(FormatError::Dangling('%'))?;
                    let field = match next {
                        '%' => {
                            literal.push(b'%');
                            continue;
                        }
                        't' => Field::Topic,
                        'p' => Field::Partition,
                        'o' => Field::Offset,
                        'k' => Field::Key,
                        'K' => Field::KeyLen,
                        's' => Field::Value,
                        'S' => Field::ValueLen,
                        'T' => Field::Timestamp,
                        'h' => Field::Headers,
                        other => return Err(FormatError::UnknownToken(other)),
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(field));
                }
                '\\' => {
                    let next = chars.next().ok_or(FormatError::Dangling('\\'))?;
                    literal.push(match next {
                        'n' => b'\n',
                        'r' => b'\r',
                        't' => b'\t',
                        '0' => 0,
                        '\\' => b'\\',
                        other => return Err(FormatError::UnknownEscape(other)),
                    });
                }
                other => {
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Format { parts })
    }

    /// The parsed parts, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Appends the rendering of `record` to `out`.
    pub fn render(&self, record: &RecordView<'_>, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Field(field) => render_field(*field, record, out),
            }
        }
    }
}

impl std::str::FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::parse(s)
    }
}

fn render_field(field: Field, r: &RecordView<'_>, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let len = |b: Option<&[u8]>| b.map_or(-1, |b| b.len() as i64);
    let _ = match field {
        Field::Topic => out.write_all(r.topic.as_bytes()),
        Field::Partition => write!(out, "{}", r.partition),
        Field::Offset => write!(out, "{}", r.offset),
        Field::Key => out.write_all(r.key.unwrap_or_default()),
        Field::KeyLen => write!(out, "{}", len(r.key)),
        Field::Value => out.write_all(r.value.unwrap_or_default()),
        Field::ValueLen => write!(out, "{}", len(r.value)),
        Field::Timestamp => write!(out, "{}", r.timestamp.unwrap_or(-1)),
        Field::Headers => {
            for (i, (name, value)) in r.headers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
                out.extend_from_slice(value.unwrap_or_default());
            }
            Ok(())
        }
    };
}

/// Replaces the escapes `\n`, `\r`, `\t`, `\0` and `\\` in a flag value such as `-K '\t'`.
pub fn unescape(s: &str) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.next().ok_or(FormatError::Dangling('\\'))?;
            out.push(match next {
                'n' => b'\n',
                'r' => b'\r',
                't' => b'\t',
                '0' => 0,
                '\\' => b'\\',
                other => return Err(FormatError::UnknownEscape(other)),
            });
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(headers: &'a [(&'a str, Option<&'a [u8]>)]) -> RecordView<'a> {
        RecordView {
            topic: "orders",
            partition: 3,
            offset: 42,
            timestamp: Some(1_700_000_000_123),
            key: Some(b"k1"),
            value: Some(b"hello"),
            headers,
        }
    }

    fn render(spec: &str, r: &RecordView<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        Format::parse(spec).unwrap().render(r, &mut out);
        out
    }

    #[test]
    fn default_is_value_and_newline() {
        let mut out = Vec::new();
        Format::default().render(&sample(&[]), &mut out);
        assert_eq!(out, b"hello\n");
    }

    #[test]
    fn every_token() {
        let h: [(&str, Option<&[u8]>); 2] = [("a", Some(b"1")), ("b", None)];
        let r = sample(&h);
        assert_eq!(
            render("%t|%p|%o|%k|%K|%s|%S|%T|%h|%%\\n", &r),
            b"orders|3|42|k1|2|hello|5|1700000000123|a=1,b=|%\n"
        );
    }

    #[test]
    fn escapes_and_literals() {
        let r = sample(&[]);
        assert_eq!(render("key=%k\\tv=%s\\r\\n", &r), b"key=k1\tv=hello\r\n");
        assert_eq!(render("\\\\%s\\0", &r), b"\\hello\0");
        assert_eq!(render("é %s", &r), "é hello".as_bytes());
        assert_eq!(render("", &r), b"");
    }

    #[test]
    fn nulls_and_missing_timestamp() {
        let r = RecordView {
            key: None,
            value: None,
            timestamp: None,
            ..sample(&[])
        };
        assert_eq!(
            render("[%k][%K][%s][%S][%T][%h]", &r),
            b"[][-1][][-1][-1][]"
        );
        let empty = RecordView {
            key: Some(b""),
            value: Some(b""),
            ..sample(&[])
        };
        assert_eq!(render("%K %S", &empty), b"0 0");
    }

    #[test]
    fn binary_values_pass_through() {
        let v = [0u8, 255, 10, 13];
        let r = RecordView {
            value: Some(&v),
            ..sample(&[])
        };
        assert_eq!(render("%s", &r), v);
    }

    #[test]
    fn adjacent_literals_merge() {
        let f = Format::parse("a%%b\\n%s").unwrap();
        assert_eq!(
            f.parts(),
            &[Part::Literal(b"a%b\n".to_vec()), Part::Field(Field::Value)]
        );
    }

    #[test]
    fn errors_name_the_culprit() {
        assert_eq!(Format::parse("%x"), Err(FormatError::UnknownToken('x')));
        assert_eq!(Format::parse("%s%"), Err(FormatError::Dangling('%')));
        assert_eq!(Format::parse("\\q"), Err(FormatError::UnknownEscape('q')));
        assert_eq!(Format::parse("abc\\"), Err(FormatError::Dangling('\\')));
        let msg = Format::parse("%x").unwrap_err().to_string();
        assert!(msg.contains("%x"), "{msg}");
    }

    #[test]
    fn unescape_delimiters() {
        assert_eq!(unescape("\\t").unwrap(), b"\t");
        assert_eq!(unescape("::").unwrap(), b"::");
        assert_eq!(unescape("a\\\\b").unwrap(), b"a\\b");
        assert!(unescape("\\z").is_err());
    }
}
