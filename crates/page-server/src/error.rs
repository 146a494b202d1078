//! The errors of the page server and its client, each naming the peer.

/// Errors of rcriu-page-server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The page server could not be reached.
    #[error("cannot connect to the page server at {peer}")]
    Connect {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    /// Talking to the peer failed (it went away, or the network did).
    #[error("page server connection with {peer}: {what}")]
    Io {
        peer: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The peer said something the protocol does not allow.
    #[error("page server peer {peer}: {what}")]
    Protocol { peer: String, what: String },
    /// The page server refused the session at its end.
    #[error("the page server at {peer} answered the close with status {status}")]
    Status { peer: String, status: i32 },
    /// Writing the images failed.
    #[error("page server session with {peer}: writing the images")]
    Image {
        peer: String,
        #[source]
        source: rcriu_images::Error,
    },
    /// A file of the TLS setup (`--tls-cacert` and the others) could not
    /// be used.
    #[error("TLS: {what} {}", path.display())]
    TlsFile {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TLS setup failed otherwise.
    #[error("TLS: {0}")]
    TlsSetup(String),
    /// The TLS session with the peer failed (its handshake: a
    /// certificate refused by either side, a peer that speaks no TLS).
    #[error("TLS with {peer}: {what}")]
    Tls {
        peer: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(peer: &str, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let (peer, what) = (peer.to_owned(), what.into());
        move |source| Error::Io { peer, what, source }
    }

    pub(crate) fn tls(peer: &str, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let (peer, what) = (peer.to_owned(), what.into());
        move |source| Error::Tls { peer, what, source }
    }

    pub(crate) fn protocol(peer: &str, what: impl Into<String>) -> Error {
        Error::Protocol {
            peer: peer.to_owned(),
            what: what.into(),
        }
    }

    pub(crate) fn image(peer: &str) -> impl FnOnce(rcriu_images::Error) -> Error {
        let peer = peer.to_owned();
        move |source| Error::Image { peer, source }
    }
}
