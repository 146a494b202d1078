//! The page stream over TLS, as criu's `--tls` (criu 4.2's `tls.c`, on
//! gnutls): the dump is the TLS client, the page server the TLS server;
//! the handshake is made right after the connection is made (connect on
//! the dump's side, accept on the server's), before the first request.
//!
//! Both sides present a certificate and verify the other's, as criu's:
//!
//! - the trusted CAs: `--tls-cacert` alone when given (a file that holds
//!   none is refused); else the system's trusted CAs and
//!   `/etc/pki/CA/cacert.pem` when it has any;
//! - the revocation list: `--tls-cacrl`, else `/etc/pki/CA/cacrl.pem`
//!   when it can be read (a `--tls-cacrl` that cannot be read is
//!   refused); a certificate whose issuer has no list is taken, as
//!   gnutls takes it;
//! - the side's own certificate and key: `--tls-cert` and `--tls-key`,
//!   else `/etc/pki/criu/cert.pem` and `/etc/pki/criu/private/key.pem`;
//! - the server asks for the client's certificate and refuses a client
//!   without one (without naming its CAs to the client, as criu's);
//! - names: the dump checks that the server's certificate is valid for
//!   the `--address` it connects to, and the page server that the
//!   client's is valid for the `--address` it listens on (criu checks the
//!   name on both sides; a server without `--address` checks none);
//!   `--tls-no-cn-verify` skips both. The name is matched against the
//!   certificate's subjectAltName entries (a DNS name or an IP address):
//!   a certificate that names its host in its CN alone is refused here
//!   (gnutls would fall back to the CN).
//!
//! TLS 1.2 and 1.3 with ECDHE and AEAD ciphers (rustls on ring), which
//! gnutls's default priority allows. criu's session ends with a
//! `close_notify` each way after CLOSE's answer; so does rcriu's.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};

use crate::stream::PageStream;
use crate::{Error, Result};

/// criu's default trusted CAs (its `SYSCONFDIR` is /etc).
pub const DEFAULT_CACERT: &str = "/etc/pki/CA/cacert.pem";
/// criu's default revocation list.
pub const DEFAULT_CACRL: &str = "/etc/pki/CA/cacrl.pem";
/// criu's default certificate.
pub const DEFAULT_CERT: &str = "/etc/pki/criu/cert.pem";
/// criu's default private key.
pub const DEFAULT_KEY: &str = "/etc/pki/criu/private/key.pem";

/// Where the system's trusted CAs are, as distributions put them.
const SYSTEM_CAS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// criu's `--tls-*` options (the paths as the caller resolved them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--tls-cacert`.
    pub cacert: Option<PathBuf>,
    /// `--tls-cacrl`.
    pub cacrl: Option<PathBuf>,
    /// `--tls-cert`.
    pub cert: Option<PathBuf>,
    /// `--tls-key`.
    pub key: Option<PathBuf>,
    /// `--tls-no-cn-verify`.
    pub no_cn_verify: bool,
}

/// rustls on ring (the workspace's crypto already): deprecated in
/// rustls 0.23.48 for having no post-quantum key exchange, which
/// gnutls's default priority does not ask for.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::TlsFile { what, path, source }
}

fn pem_err(e: rustls::pki_types::pem::Error) -> io::Error {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// Every certificate of the PEM file `path`.
fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let err = file_err(what, path);
    let iter = match CertificateDer::pem_file_iter(path) {
        Ok(i) => i,
        Err(e) => return Err(err(pem_err(e))),
    };
    match iter.collect::<std::result::Result<Vec<_>, _>>() {
        Ok(v) if v.is_empty() => Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM certificate in it",
        ))),
        Ok(v) => Ok(v),
        Err(e) => Err(err(pem_err(e))),
    }
}

/// The trusted CAs.
fn roots(o: &TlsOptions) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if let Some(p) = &o.cacert {
        for c in read_certs("reading the trusted CA certificates (--tls-cacert)", p)? {
            roots.add(c).map_err(|e| Error::TlsFile {
                what: "a trusted CA certificate (--tls-cacert) rustls cannot use in",
                path: p.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?;
        }
        return Ok(roots);
    }
    if let Some(sys) = SYSTEM_CAS.iter().map(Path::new).find(|p| p.exists()) {
        match CertificateDer::pem_file_iter(sys) {
            Ok(i) => {
                let (added, ignored) = roots.add_parsable_certificates(i.filter_map(|c| c.ok()));
                log::debug!(
                    "tls: {added} trusted CA certificates from {} ({ignored} unusable)",
                    sys.display()
                );
            }
            Err(e) => log::warn!("tls: the system's trusted CAs in {}: {e}", sys.display()),
        }
    }
    match CertificateDer::pem_file_iter(DEFAULT_CACERT) {
        Ok(i) => {
            let (added, _) = roots.add_parsable_certificates(i.filter_map(|c| c.ok()));
            if added == 0 {
                log::info!("tls: No trusted CA certificates added ({DEFAULT_CACERT})");
            }
        }
        Err(e) => log::debug!("tls: {DEFAULT_CACERT}: {e}"),
    }
    if roots.is_empty() {
        return Err(Error::TlsSetup(format!(
            "no trusted CA certificate: --tls-cacert names none, and neither the system nor {DEFAULT_CACERT} has one"
        )));
    }
    Ok(roots)
}

/// The revocation lists.
fn crls(o: &TlsOptions) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let path = o
        .cacrl
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACRL));
    let what = "reading the certificate revocation list";
    let iter = match CertificateRevocationListDer::pem_file_iter(&path) {
        Ok(i) => i,
        Err(e) if o.cacrl.is_some() => return Err(file_err(what, &path)(pem_err(e))),
        Err(_) => return Ok(Vec::new()),
    };
    let v = iter
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| file_err(what, &path)(pem_err(e)))?;
    if v.is_empty() {
        return Err(file_err(what, &path)(io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM revocation list in it",
        )));
    }
    log::debug!(
        "tls: {} revocation list(s) from {}",
        v.len(),
        path.display()
    );
    Ok(v)
}

/// The side's certificate chain and key.
fn identity(o: &TlsOptions) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert = o
        .cert
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CERT));
    let key = o.key.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_KEY));
    let certs = read_certs("reading the certificate (--tls-cert)", &cert)?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| file_err("reading the private key (--tls-key)", &key)(pem_err(e)))?;
    Ok((certs, key))
}

fn setup_err(what: &str) -> impl FnOnce(rustls::Error) -> Error {
    let what = what.to_owned();
    move |e| Error::TlsSetup(format!("{what}: {e}"))
}

fn no_tickets(cfg: &mut ServerConfig) {
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
}

/// The dump's TLS: its configuration, read from the options' files.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    no_cn_verify: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("no_cn_verify", &self.no_cn_verify)
            .finish()
    }
}

impl ClientTls {
    /// Reads the CAs, revocation lists, certificate and key of `o`.
    pub fn new(o: &TlsOptions) -> Result<ClientTls> {
        let provider = provider();
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(o)?), provider.clone())
                .with_crls(crls(o)?)
                .allow_unknown_revocation_status()
                .build()
                .map_err(|e| Error::TlsSetup(format!("the server certificate verifier: {e}")))?;
        let verifier = Arc::new(ServerVerifier {
            inner,
            no_cn_verify: o.no_cn_verify,
        });
        let (certs, key) = identity(o)?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(setup_err("the protocol versions"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(certs, key)
            .map_err(setup_err(
                "the certificate (--tls-cert) and its key (--tls-key)",
            ))?;
        // criu's client names no server (no SNI).
        config.enable_sni = false;
        Ok(ClientTls {
            config: Arc::new(config),
            no_cn_verify: o.no_cn_verify,
        })
    }

    /// Makes the handshake on `sock`, connected to `address` (the name
    /// the server's certificate must hold); `peer` for messages.
    pub fn connect<S: Read + Write>(
        &self,
        mut sock: S,
        address: &str,
        peer: &str,
    ) -> Result<TlsStream<S>> {
        let name = server_name(address, self.no_cn_verify)?;
        let mut conn = ClientConnection::new(self.config.clone(), name)
            .map_err(setup_err("a TLS client session"))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(Error::tls(peer, "the TLS handshake"))?;
        }
        log_session(peer, &conn);
        Ok(TlsStream(Inner::Client(Box::new(StreamOwned::new(
            conn, sock,
        )))))
    }
}

/// The name `address` gives a certificate to hold: a DNS name or an IP
/// address; any name when none is checked.
fn server_name(address: &str, no_cn_verify: bool) -> Result<ServerName<'static>> {
    let a = address.trim_start_matches('[').trim_end_matches(']');
    match ServerName::try_from(a.to_owned()) {
        Ok(n) => Ok(n),
        Err(_) if no_cn_verify => Ok(ServerName::try_from("page-server")
            .expect("\"page-server\" is a DNS name")
            .to_owned()),
        Err(e) => Err(Error::TlsSetup(format!(
            "the address {address} is no name a certificate can hold ({e}); --tls-no-cn-verify skips the check"
        ))),
    }
}

/// The server's certificate checked as gnutls checks it for criu; its
/// name only without `--tls-no-cn-verify`.
#[derive(Debug)]
struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    no_cn_verify: bool,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // The name is checked last, once the chain and its revocation
        // are.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.no_cn_verify => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The page server's TLS: its configuration, read from the options'
/// files.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the CAs, revocation lists, certificate and key of `o`; the
    /// client's certificate must be valid for `address` (the server's
    /// `--address`) unless `--tls-no-cn-verify`.
    pub fn new(o: &TlsOptions, address: Option<&str>) -> Result<ServerTls> {
        let provider = provider();
        let inner =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(o)?), provider.clone())
                .with_crls(crls(o)?)
                .allow_unknown_revocation_status()
                .clear_root_hint_subjects()
                .build()
                .map_err(|e| Error::TlsSetup(format!("the client certificate verifier: {e}")))?;
        let name = match address {
            Some(a) if !o.no_cn_verify => Some(server_name(a, false)?),
            _ => None,
        };
        let verifier = Arc::new(ClientVerifier { inner, name });
        let (certs, key) = identity(o)?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(setup_err("the protocol versions"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(setup_err(
                "the certificate (--tls-cert) and its key (--tls-key)",
            ))?;
        no_tickets(&mut config);
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// Makes the handshake on `sock`, accepted from `peer`.
    pub fn accept<S: Read + Write>(&self, mut sock: S, peer: &str) -> Result<TlsStream<S>> {
        let mut conn = ServerConnection::new(self.config.clone())
            .map_err(setup_err("a TLS server session"))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(Error::tls(peer, "the TLS handshake"))?;
        }
        log_session(peer, &conn);
        Ok(TlsStream(Inner::Server(Box::new(StreamOwned::new(
            conn, sock,
        )))))
    }
}

fn log_session<D>(peer: &str, conn: &rustls::ConnectionCommon<D>) {
    log::info!(
        "tls: TLS handshake with {peer} completed ({:?}, {:?})",
        conn.protocol_version(),
        conn.negotiated_cipher_suite().map(|c| c.suite())
    );
}

/// The client's certificate checked as gnutls checks it for criu's page
/// server: required, valid up to a trusted CA, not revoked, and valid
/// for the server's address when one is checked. A refused certificate
/// is answered with a TLS alert, which the client names.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    name: Option<ServerName<'static>>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Some(name) = &self.name {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            verify_server_name(&parsed, name)?;
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

enum Inner<S: Read + Write> {
    Client(Box<StreamOwned<ClientConnection, S>>),
    Server(Box<StreamOwned<ServerConnection, S>>),
}

/// A connection through TLS, made by [`ClientTls::connect`] or
/// [`ServerTls::accept`]. Its bytes are copied through the TLS session:
/// it has no fd to splice.
pub struct TlsStream<S: Read + Write = TcpStream>(Inner<S>);

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::Client(s) => s.read(b),
            Inner::Server(s) => s.read(b),
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::Client(s) => s.write(b),
            Inner::Server(s) => s.write(b),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::Client(s) => s.flush(),
            Inner::Server(s) => s.flush(),
        }
    }
}

impl<S: Read + Write> PageStream for TlsStream<S> {
    fn splice_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    fn close_write(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::Client(s) => s.conn.send_close_notify(),
            Inner::Server(s) => s.conn.send_close_notify(),
        }
        self.flush()
    }
}

impl TlsStream<TcpStream> {
    /// The TCP socket under the session (for its options).
    pub fn tcp(&self) -> &TcpStream {
        match &self.0 {
            Inner::Client(s) => &s.sock,
            Inner::Server(s) => &s.sock,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_what_a_certificate_must_hold() {
        assert!(matches!(
            server_name("127.0.0.1", false),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]", false),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("node-2.example", false),
            Ok(ServerName::DnsName(_))
        ));
        let e = server_name("no name!", false).unwrap_err().to_string();
        assert!(e.contains("no name!"), "{e}");
        assert!(e.contains("--tls-no-cn-verify"), "{e}");
        assert!(server_name("no name!", true).is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let o = TlsOptions {
            cacert: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let e = ClientTls::new(&o).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(e.contains("--tls-cacert"), "{e}");
        let e = ServerTls::new(&o, None).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
