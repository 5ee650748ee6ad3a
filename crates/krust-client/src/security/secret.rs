//! [`Secret`]: a value that never shows itself in `Debug`, `Display`, logs or errors.
//!
//! Passwords, OAuth tokens and private keys are held in a `Secret`. The only way to read the
//! value is [`Secret::expose`], which is meant to appear at the few places that put the secret on
//! the wire; a grep for `expose(` finds every one of them. The value is overwritten with zeros
//! when the `Secret` is dropped (best effort: copies made by the allocator when a `String` grew
//! earlier are out of reach).

use std::fmt;

use zeroize::Zeroize;

/// A value kept out of every formatted output: `{:?}` and `{}` print `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value itself. Use it only to put the secret on the wire.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl Secret<String> {
    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret<String> {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret<String> {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl From<Vec<u8>> for Secret<Vec<u8>> {
    fn from(v: Vec<u8>) -> Self {
        Secret(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_the_value() {
        let s = Secret::from("hunter2");
        assert_eq!(
            format!("{s:?} {s} {s:#?}"),
            "[redacted] [redacted] [redacted]"
        );
        assert_eq!(s.expose(), "hunter2");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            password: Secret<String>,
        }
        let h = Holder { password: s };
        assert!(!format!("{h:?}").contains("hunter2"));
    }
}
