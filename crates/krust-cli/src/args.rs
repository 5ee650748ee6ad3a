//! Values of individual flags, parsed into types: `-X prop=value`, `-H name=value`, `-o` start
//! positions, `--acks`, `-z` codecs and `-K` delimiters. Every parser returns a one-line
//! message naming the bad input, which clap puts after "invalid value ... for '`<flag>`'".

use std::fmt;
use std::str::FromStr;

/// A `-X name=value` client property (Kafka's property names: `linger.ms`, `client.id`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The property name.
    pub name: String,
    /// The value, as given.
    pub value: String,
}

impl FromStr for Property {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}' is not of the form name=value"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("'{s}' has an empty property name"));
        }
        Ok(Property {
            name: name.to_string(),
            value: value.to_string(),
        })
    }
}

/// A `-H name=value` record header. `name=` gives an empty value; a bare `name` a null value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub name: String,
    /// The header value; `None` is a null value.
    pub value: Option<String>,
}

impl FromStr for Header {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (s, None),
        };
        if name.is_empty() {
            return Err(format!("'{s}' has an empty header name"));
        }
        Ok(Header {
            name: name.to_string(),
            value,
        })
    }
}

/// Where `consume` starts reading (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// `beginning`: the earliest retained offset.
    #[default]
    Beginning,
    /// `end`: only records produced from now on.
    End,
    /// `N`: this absolute offset.
    Offset(i64),
    /// `-N`: N records before the end of each partition (as kcat).
    FromEnd(i64),
    /// `@MS`: the first record whose timestamp is at or after MS (ms since the epoch).
    Timestamp(i64),
}

impl FromStr for StartAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not beginning, end, an offset, -N, or @TIMESTAMP_MS");
        match s {
            "beginning" | "earliest" => Ok(StartAt::Beginning),
            "end" | "latest" => Ok(StartAt::End),
            _ => {
                if let Some(ts) = s.strip_prefix('@') {
                    let ms: i64 = ts.parse().map_err(|_| bad())?;
                    if ms < 0 {
                        return Err(bad());
                    }
                    Ok(StartAt::Timestamp(ms))
                } else if let Some(n) = s.strip_prefix('-') {
                    let n: i64 = n.parse().map_err(|_| bad())?;
                    if n <= 0 {
                        return Err(bad());
                    }
                    Ok(StartAt::FromEnd(n))
                } else {
                    s.parse().map(StartAt::Offset).map_err(|_| bad())
                }
            }
        }
    }
}

/// Produce acknowledgement level (`--acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `0`: fire and forget; the broker sends no answer.
    None,
    /// `1`: the leader has written the record.
    Leader,
    /// `all` (or `-1`): every in-sync replica has it.
    #[default]
    All,
}

impl Acks {
    /// The Kafka property value (`acks=`).
    pub fn as_property(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

impl FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("'{s}' is not 0, 1 or all")),
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_property())
    }
}

/// Compression codec (`-z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4.
    Lz4,
    /// zstd.
    Zstd,
}

impl Codec {
    /// The Kafka property value (`compression.type=`).
    pub fn as_property(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Codec::None),
            "gzip" => Ok(Codec::Gzip),
            "snappy" => Ok(Codec::Snappy),
            "lz4" => Ok(Codec::Lz4),
            "zstd" => Ok(Codec::Zstd),
            _ => Err(format!("'{s}' is not none, gzip, snappy, lz4 or zstd")),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_property())
    }
}

/// A `-K` key delimiter: escapes allowed (`-K '\t'`), must not be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiter(pub Vec<u8>);

impl FromStr for Delimiter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = crate::format::unescape(s).map_err(|e| e.to_string())?;
        if bytes.is_empty() {
            return Err("the key delimiter must not be empty".to_string());
        }
        Ok(Delimiter(bytes))
    }
}

impl Delimiter {
    /// Splits `line` at the first delimiter into (key, value); without one, the whole line is
    /// the value and the key is null (as kcat does).
    pub fn split<'a>(&self, line: &'a [u8]) -> (Option<&'a [u8]>, &'a [u8]) {
        let d = &self.0;
        match line.windows(d.len()).position(|w| w == d.as_slice()) {
            Some(i) => (Some(&line[..i]), &line[i + d.len()..]),
            None => (None, line),
        }
    }
}

/// A `HOST:PORT` broker address, checked for shape only (`-b`). Commas separate several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brokers(pub String);

impl FromStr for Brokers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list: Vec<&str> = s.split(',').map(str::trim).collect();
        for b in &list {
            let (host, port) = b
                .rsplit_once(':')
                .ok_or_else(|| format!("'{b}' is not HOST:PORT"))?;
            if host.is_empty() {
                return Err(format!("'{b}' has no host"));
            }
            port.parse::<u16>()
                .map_err(|_| format!("'{b}' has no valid port"))?;
        }
        Ok(Brokers(list.join(",")))
    }
}

impl fmt::Display for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `NAME[:PARTITIONS]` topic (`fake-cluster --topic`); one partition by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
}

impl FromStr for TopicSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, partitions) = match s.rsplit_once(':') {
            Some((n, p)) => {
                let p: i32 = p
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("'{p}' is not a positive partition count"))?;
                (n, p)
            }
            None => (s, 1),
        };
        if name.is_empty() {
            return Err(format!("'{s}' has an empty topic name"));
        }
        Ok(TopicSpec {
            name: name.to_string(),
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties() {
        let p: Property = "linger.ms=5".parse().unwrap();
        assert_eq!((p.name.as_str(), p.value.as_str()), ("linger.ms", "5"));
        let p: Property = "sasl.jaas=a=b".parse().unwrap();
        assert_eq!(p.value, "a=b");
        let p: Property = "client.id=".parse().unwrap();
        assert_eq!(p.value, "");
        assert!("linger.ms"
            .parse::<Property>()
            .unwrap_err()
            .contains("name=value"));
        assert!("=5".parse::<Property>().unwrap_err().contains("empty"));
    }

    #[test]
    fn headers() {
        let h: Header = "trace=abc".parse().unwrap();
        assert_eq!(h.value.as_deref(), Some("abc"));
        let h: Header = "empty=".parse().unwrap();
        assert_eq!(h.value.as_deref(), Some(""));
        let h: Header = "flag".parse().unwrap();
        assert_eq!(h.value, None);
        assert!("=x".parse::<Header>().is_err());
    }

    #[test]
    fn start_positions() {
        assert_eq!("beginning".parse(), Ok(StartAt::Beginning));
        assert_eq!("end".parse(), Ok(StartAt::End));
        assert_eq!("0".parse(), Ok(StartAt::Offset(0)));
        assert_eq!("1234".parse(), Ok(StartAt::Offset(1234)));
        assert_eq!("-10".parse(), Ok(StartAt::FromEnd(10)));
        assert_eq!(
            "@1700000000000".parse(),
            Ok(StartAt::Timestamp(1_700_000_000_000))
        );
        for bad in ["", "start", "@", "@-5", "-0", "--1", "1.5", "@abc"] {
            assert!(bad.parse::<StartAt>().is_err(), "{bad}");
        }
    }

    #[test]
    fn acks_and_codecs() {
        assert_eq!("0".parse(), Ok(Acks::None));
        assert_eq!("1".parse(), Ok(Acks::Leader));
        assert_eq!("all".parse(), Ok(Acks::All));
        assert_eq!("-1".parse(), Ok(Acks::All));
        assert!("2".parse::<Acks>().is_err());
        for c in ["none", "gzip", "snappy", "lz4", "zstd"] {
            assert_eq!(c.parse::<Codec>().unwrap().as_property(), c);
        }
        assert!("brotli".parse::<Codec>().unwrap_err().contains("brotli"));
    }

    #[test]
    fn delimiters() {
        let d: Delimiter = ":".parse().unwrap();
        assert_eq!(d.split(b"k:v:w"), (Some(&b"k"[..]), &b"v:w"[..]));
        assert_eq!(d.split(b"novalue"), (None, &b"novalue"[..]));
        assert_eq!(d.split(b":v"), (Some(&b""[..]), &b"v"[..]));
        let tab: Delimiter = "\\t".parse().unwrap();
        assert_eq!(tab.split(b"a\tb"), (Some(&b"a"[..]), &b"b"[..]));
        let multi: Delimiter = "::".parse().unwrap();
        assert_eq!(multi.split(b"a:b::c"), (Some(&b"a:b"[..]), &b"c"[..]));
        assert!("".parse::<Delimiter>().is_err());
    }

    #[test]
    fn topic_specs() {
        assert_eq!(
            "t:3".parse(),
            Ok(TopicSpec {
                name: "t".into(),
                partitions: 3
            })
        );
        assert_eq!("t".parse::<TopicSpec>().unwrap().partitions, 1);
        assert!("t:0".parse::<TopicSpec>().is_err());
        assert!(":2".parse::<TopicSpec>().is_err());
    }

    #[test]
    fn broker_lists() {
        assert_eq!(
            "127.0.0.1:9092".parse::<Brokers>().unwrap().0,
            "127.0.0.1:9092"
        );
        assert_eq!("a:1, b:2".parse::<Brokers>().unwrap().0, "a:1,b:2");
        assert!("localhost".parse::<Brokers>().is_err());
        assert!(":9092".parse::<Brokers>().is_err());
        assert!("host:99999".parse::<Brokers>().is_err());
    }
}
