//! SASL/PLAIN (RFC 4616): one message, `authzid NUL user NUL password`, with an empty authzid
//! (Kafka takes the user name as the principal).
//!
//! PLAIN sends the password as it is: use it only over TLS (`SASL_SSL`) or on a trusted network.

use super::secret::Secret;

/// The single PLAIN client message. It contains the password, hence the [`Secret`].
pub fn initial_response(
    username: &str,
    password: &Secret<String>,
) -> Result<Secret<Vec<u8>>, String> {
    if username.contains('\0') {
        return Err("sasl.username must not contain a NUL character".into());
    }
    if password.expose().contains('\0') {
        return Err("sasl.password must not contain a NUL character".into());
    }
    let mut msg = Vec::with_capacity(2 + username.len() + password.expose().len());
    msg.push(0);
    msg.extend_from_slice(username.as_bytes());
    msg.push(0);
    msg.extend_from_slice(password.expose().as_bytes());
    Ok(Secret::new(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout() {
        let m = initial_response("alice", &Secret::from("pw")).unwrap();
        assert_eq!(m.expose().as_slice(), b"\0alice\0pw");
        assert!(initial_response("a\0b", &Secret::from("pw")).is_err());
        let e = initial_response("a", &Secret::from("p\0w")).unwrap_err();
        assert!(!e.contains("p\0w"));
    }
}
