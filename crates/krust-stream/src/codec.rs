//! Deserializers (input bytes -> values) and serializers (values -> output bytes): raw bytes,
//! UTF-8 strings, JSON through serde, and traits for custom ones.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Turns a record value into a `T`. A failure goes to the source's error policy.
///
/// A null value (`None`) is passed as is: the built-in deserializers reject it (except
/// [`BytesDeserializer`], which gives empty bytes) so that tombstones are visible.
pub trait Deserializer: Send + Sync + 'static {
    /// The value type.
    type Output: Send + 'static;
    /// Decodes one value; the error is a one-line reason.
    fn deserialize(&self, value: Option<&Bytes>) -> Result<Self::Output, String>;
}

/// Turns a `T` into a record value. A failure goes to the error policy of the job.
pub trait Serializer<T>: Send + Sync + 'static {
    /// Encodes one value; the error is a one-line reason.
    fn serialize(&self, value: &T) -> Result<Bytes, String>;
}

/// Raw bytes in, raw bytes out (a null value becomes empty bytes).
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesDeserializer;

impl Deserializer for BytesDeserializer {
    type Output = Bytes;
    fn deserialize(&self, value: Option<&Bytes>) -> Result<Bytes, String> {
        Ok(value.cloned().unwrap_or_default())
    }
}

/// UTF-8 text; invalid UTF-8 or a null value is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Deserializer;

impl Deserializer for Utf8Deserializer {
    type Output = String;
    fn deserialize(&self, value: Option<&Bytes>) -> Result<String, String> {
        let v = value.ok_or_else(|| "null value".to_string())?;
        std::str::from_utf8(v)
            .map(str::to_owned)
            .map_err(|e| format!("invalid UTF-8: {e}"))
    }
}

/// JSON into any `serde::Deserialize` type; invalid JSON or a null value is an error.
pub struct JsonDeserializer<T>(PhantomData<fn() -> T>);

impl<T> JsonDeserializer<T> {
    /// A JSON deserializer for `T`.
    pub fn new() -> Self {
        JsonDeserializer(PhantomData)
    }
}

impl<T> Default for JsonDeserializer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for JsonDeserializer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonDeserializer")
    }
}

impl<T: DeserializeOwned + Send + 'static> Deserializer for JsonDeserializer<T> {
    type Output = T;
    fn deserialize(&self, value: Option<&Bytes>) -> Result<T, String> {
        let v = value.ok_or_else(|| "null value".to_string())?;
        serde_json::from_slice(v).map_err(|e| format!("invalid JSON: {e}"))
    }
}

/// A deserializer from a function.
pub struct FnDeserializer<F>(pub F);

impl<F, T> Deserializer for FnDeserializer<F>
where
    F: Fn(Option<&Bytes>) -> Result<T, String> + Send + Sync + 'static,
    T: Send + 'static,
{
    type Output = T;
    fn deserialize(&self, value: Option<&Bytes>) -> Result<T, String> {
        (self.0)(value)
    }
}

/// Bytes out as they are (anything that converts cheaply into [`Bytes`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerializer;

impl<T: AsRef<[u8]> + Send + Sync + 'static> Serializer<T> for BytesSerializer {
    fn serialize(&self, value: &T) -> Result<Bytes, String> {
        Ok(Bytes::copy_from_slice(value.as_ref()))
    }
}

/// Text out as UTF-8.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerializer;

impl<T: AsRef<str> + Send + Sync + 'static> Serializer<T> for StringSerializer {
    fn serialize(&self, value: &T) -> Result<Bytes, String> {
        Ok(Bytes::copy_from_slice(value.as_ref().as_bytes()))
    }
}

/// Any `serde::Serialize` value out as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

impl<T: Serialize + Send + Sync + 'static> Serializer<T> for JsonSerializer {
    fn serialize(&self, value: &T) -> Result<Bytes, String> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| format!("cannot encode JSON: {e}"))
    }
}

/// A serializer from a function.
pub struct FnSerializer<F>(pub F);

impl<F, T> Serializer<T> for FnSerializer<F>
where
    F: Fn(&T) -> Result<Bytes, String> + Send + Sync + 'static,
{
    fn serialize(&self, value: &T) -> Result<Bytes, String> {
        (self.0)(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Order {
        id: u32,
        item: String,
    }

    #[test]
    fn built_ins() {
        let b = Bytes::from_static(b"caf\xc3\xa9");
        assert_eq!(Utf8Deserializer.deserialize(Some(&b)).unwrap(), "café");
        let bad = Bytes::from_static(b"\xff");
        assert!(Utf8Deserializer
            .deserialize(Some(&bad))
            .unwrap_err()
            .contains("invalid UTF-8"));
        assert_eq!(
            Utf8Deserializer.deserialize(None).unwrap_err(),
            "null value"
        );
        assert_eq!(BytesDeserializer.deserialize(None).unwrap(), Bytes::new());
        let j = Bytes::from_static(br#"{"id":7,"item":"tea"}"#);
        let o: Order = JsonDeserializer::new().deserialize(Some(&j)).unwrap();
        assert_eq!(
            o,
            Order {
                id: 7,
                item: "tea".into()
            }
        );
        let e = JsonDeserializer::<Order>::new()
            .deserialize(Some(&Bytes::from_static(b"{oops")))
            .unwrap_err();
        assert!(e.starts_with("invalid JSON"), "{e}");
        assert_eq!(JsonSerializer.serialize(&o).unwrap(), j);
        assert_eq!(
            StringSerializer.serialize(&"x".to_string()).unwrap(),
            Bytes::from_static(b"x")
        );
        let f = FnDeserializer(|v: Option<&Bytes>| Ok::<usize, String>(v.map_or(0, |b| b.len())));
        assert_eq!(f.deserialize(Some(&j)).unwrap(), j.len());
    }
}
