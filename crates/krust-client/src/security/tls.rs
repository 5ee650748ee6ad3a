//! TLS settings ([`TlsConfig`], always present so properties parse the same in every build) and,
//! with the `tls` or `tls-rustcrypto` feature, the rustls connector that uses them.
//!
//! - **Verification is on by default**: the broker's chain must lead to a trusted CA (the CA file
//!   in `ssl.ca.location`, or else the Mozilla root set compiled in through `webpki-roots`, so no
//!   system files or C libraries are read), and its certificate must name the host we dialled
//!   (`ssl.endpoint.identification.algorithm=https`, the default; `none` keeps the chain check
//!   and skips only the name check).
//! - **SNI** carries the host name of the address being dialled (bootstrap or advertised), unless
//!   it is an IP address, which rustls then checks against the certificate's IP SANs.
//! - **Client certificates** (mTLS): `ssl.certificate.location` plus `ssl.key.location`, PEM.
//! - **Crypto provider**: `tls` uses *ring* (C and assembly, built by `cc`: a musl build needs a
//!   C compiler for the target, e.g. `musl-gcc` or `CC_x86_64_unknown_linux_musl`), and
//!   `tls-rustcrypto` uses rustls-rustcrypto, pure Rust (alpha quality, unaudited; see the crate
//!   docs). With both, *ring* is used.

use std::path::PathBuf;

/// TLS settings (Kafka's `ssl.*` properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `ssl.ca.location`: a PEM file of CA certificates to trust instead of the built-in
    /// Mozilla roots. Default: none (built-in roots).
    pub ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: the client's PEM certificate chain, for mTLS. Needs
    /// `ssl.key.location`. Default: none.
    pub certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: the client's PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    /// Default: none.
    pub key_location: Option<PathBuf>,
    /// `ssl.endpoint.identification.algorithm`: `https` (true, the default) checks that the
    /// broker's certificate names the host dialled; `none` (false) skips that check but still
    /// verifies the chain.
    pub verify_hostname: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_location: None,
            certificate_location: None,
            key_location: None,
            verify_hostname: true,
        }
    }
}

impl TlsConfig {
    /// Whether any `ssl.*` setting differs from the default (used to reject `ssl.*` settings
    /// given with a protocol that has no TLS).
    pub fn is_default(&self) -> bool {
        *self == TlsConfig::default()
    }

    /// Checks the settings that can be checked without reading files.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match (&self.certificate_location, &self.key_location) {
            (Some(_), None) => Err((
                "ssl.key.location",
                "ssl.certificate.location is set, so the client key is needed too".into(),
            )),
            (None, Some(_)) => Err((
                "ssl.certificate.location",
                "ssl.key.location is set, so the client certificate is needed too".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(feature = "tls-core")]
pub(crate) use imp::TlsConnector;

#[cfg(feature = "tls-core")]
mod imp {
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::CryptoProvider;
    use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    use super::TlsConfig;

    fn provider() -> Arc<CryptoProvider> {
        #[cfg(feature = "tls")]
        let p = rustls::crypto::ring::default_provider();
        #[cfg(not(feature = "tls"))]
        let p = rustls_rustcrypto::provider();
        Arc::new(p)
    }

    /// The name of the provider in use, for docs and diagnostics.
    pub(crate) fn provider_name() -> &'static str {
        if cfg!(feature = "tls") {
            "ring"
        } else {
            "rustls-rustcrypto"
        }
    }

    /// Accepts certificates whose chain verifies but whose names do not match the host
    /// (`ssl.endpoint.identification.algorithm=none`). webpki checks the chain before the
    /// name, so a name error means the chain was fine.
    #[derive(Debug)]
    struct ChainOnly(Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self.0.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }

    /// A ready rustls client configuration (files read once, when the client is created).
    #[derive(Clone)]
    pub(crate) struct TlsConnector {
        config: Arc<rustls::ClientConfig>,
        /// What the client trusts, for error messages.
        trust: String,
    }

    impl std::fmt::Debug for TlsConnector {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TlsConnector")
                .field("trust", &self.trust)
                .field("provider", &provider_name())
                .finish()
        }
    }

    fn read_err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
        format!("cannot read {what} from `{}`: {e}", path.display())
    }

    impl TlsConnector {
        /// Builds the rustls configuration; errors name the property at fault.
        pub(crate) fn new(cfg: &TlsConfig) -> Result<Self, (&'static str, String)> {
            cfg.validate()?;
            let provider = provider();
            let mut roots = RootCertStore::empty();
            let trust = match &cfg.ca_location {
                Some(path) => {
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| ("ssl.ca.location", read_err("CA certificates", path, e)))?;
                    if certs.is_empty() {
                        return Err((
                            "ssl.ca.location",
                            format!("`{}` holds no PEM certificate", path.display()),
                        ));
                    }
                    let (added, _ignored) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err((
                            "ssl.ca.location",
                            format!("no usable CA certificate in `{}`", path.display()),
                        ));
                    }
                    format!("the CA file `{}`", path.display())
                }
                None => {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    "the built-in Mozilla roots (webpki-roots; set ssl.ca.location for a private CA)"
                        .to_string()
                }
            };
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| {
                        (
                            "ssl.ca.location",
                            format!("cannot use the CA certificates: {e}"),
                        )
                    })?;
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ("security.protocol", format!("TLS provider: {e}")))?;
            let builder = if cfg.verify_hostname {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            };
            let config = match (&cfg.certificate_location, &cfg.key_location) {
                (Some(cert), Some(key)) => {
                    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| {
                            (
                                "ssl.certificate.location",
                                read_err("the client certificate", cert, e),
                            )
                        })?;
                    if chain.is_empty() {
                        return Err((
                            "ssl.certificate.location",
                            format!("`{}` holds no PEM certificate", cert.display()),
                        ));
                    }
                    // The key's bytes never reach an error message: only the path does.
                    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                        (
                            "ssl.key.location",
                            read_err("the client private key", key, e),
                        )
                    })?;
                    builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                        (
                            "ssl.key.location",
                            format!("the client key does not fit the certificate: {e}"),
                        )
                    })?
                }
                _ => builder.with_no_client_auth(),
            };
            Ok(TlsConnector {
                config: Arc::new(config),
                trust,
            })
        }

        /// Runs the TLS handshake over `tcp` for `host` (SNI and name check). Errors are one
        /// line and say what failed: the name, the CA, or that the other side is not TLS.
        pub(crate) async fn connect(
            &self,
            host: &str,
            tcp: TcpStream,
        ) -> Result<TlsStream<TcpStream>, String> {
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| format!("`{host}` is not a valid TLS server name"))?;
            tokio_rustls::TlsConnector::from(self.config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| self.describe(host, e))
        }

        fn describe(&self, host: &str, e: std::io::Error) -> String {
            const NOT_TLS: &str = "TLS handshake failed: the broker's answer is not TLS \
                (is this a plaintext listener? then use security.protocol=PLAINTEXT or \
                SASL_PLAINTEXT)";
            const CLOSED: &str = "TLS handshake failed: the broker closed the connection \
                (is this a plaintext listener? then use security.protocol=PLAINTEXT or \
                SASL_PLAINTEXT)";
            const VERIFY: &str = "TLS certificate verification failed";
            const NAME_CHECK: &str = "(ssl.endpoint.identification.algorithm=https)";
            let tls = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            let Some(tls) = tls else {
                use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
                return if matches!(
                    e.kind(),
                    UnexpectedEof | ConnectionReset | ConnectionAborted
                ) {
                    CLOSED.to_string()
                } else {
                    format!("TLS handshake failed: {e}")
                };
            };
            match tls {
                rustls::Error::InvalidCertificate(c) => match c {
                    CertificateError::NotValidForName => format!(
                        "{VERIFY}: the broker's certificate is not valid for host name `{host}` \
                         {NAME_CHECK}"
                    ),
                    CertificateError::NotValidForNameContext { presented, .. } => {
                        // rustls renders names as `DnsName("x")` / `IpAddress(..)`: keep x.
                        let clean = |n: &String| match (n.find("(\""), n.rfind("\")")) {
                            (Some(a), Some(b)) if a + 2 <= b => n[a + 2..b].to_string(),
                            _ => n.clone(),
                        };
                        let names = if presented.is_empty() {
                            "no names".to_string()
                        } else {
                            presented.iter().map(clean).collect::<Vec<_>>().join(", ")
                        };
                        format!(
                            "{VERIFY}: the broker's certificate is not valid for host name \
                             `{host}`, only for {names} {NAME_CHECK}"
                        )
                    }
                    CertificateError::UnknownIssuer => format!(
                        "{VERIFY}: the broker's certificate for `{host}` is not signed by a \
                         trusted CA (trusted: {})",
                        self.trust
                    ),
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                        format!("{VERIFY}: the broker's certificate for `{host}` has expired ({c})")
                    }
                    other => format!("{VERIFY} for `{host}`: {other} (trusted: {})", self.trust),
                },
                rustls::Error::AlertReceived(alert) => format!(
                    "TLS handshake failed: the broker sent the alert `{alert:?}` (does it require \
                     a client certificate, ssl.certificate.location and ssl.key.location, or one \
                     signed by another CA?)"
                ),
                rustls::Error::InvalidMessage(_)
                | rustls::Error::InappropriateMessage { .. }
                | rustls::Error::InappropriateHandshakeMessage { .. } => NOT_TLS.to_string(),
                other => format!("TLS handshake failed: {other}"),
            }
        }
    }
}
