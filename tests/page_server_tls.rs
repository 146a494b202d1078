//! The page server through TLS, as criu's `--tls`: `rcriu page-server
//! --tls` (listening on 127.0.0.1, ready when its `--status-fd` says so)
//! and `rcriu dump --page-server --tls`, each with its certificate and
//! key, both trusting a test CA. Everything of the PKI is made by the
//! test (rcgen) in a temporary directory: two CAs, certificates for
//! 127.0.0.1, one for another host, one of the other CA, and a
//! revocation list.
//!
//! - A dump through TLS restores (the `bigmem` workload checks every page
//!   from inside); negative control: a byte changed in the server's pages
//!   image is noticed. A proxy between the two sees no request in the
//!   clear through TLS, and sees it without `--tls` (the control).
//! - Refusals, each leaving the target running exactly as before and no
//!   image in the dump's directory: a server whose certificate the dump's
//!   CA did not sign (named by the dump); a server certificate for
//!   another host (unless the dump has `--tls-no-cn-verify`); a client
//!   certificate for another host than the server's `--address` (unless
//!   the server has `--tls-no-cn-verify`); a revoked client certificate
//!   (`--tls-cacrl`); a plain dump against a TLS server, and a TLS dump
//!   against a plain server. A client without a certificate is refused
//!   by the server; the same client with one gets through (the control).
//! - A pre-dump (`--track-mem`) sends its pages through TLS too (none of
//!   its requests in the clear; the server's pages image as long as its
//!   pagemap's present runs), its process running on intact.
//! - `page-server --ps-socket FD --tls` makes the TLS session on the
//!   connection it is given (as criu's): a TLS dump connecting to the
//!   test's listener, whose accepted end the server gets, goes through
//!   and restores; the same server without `--tls` refuses it (control).
//! - With `RCRIU_TEST_CRIU` naming CRIU 4.2's criu (built with gnutls):
//!   rcriu's dump to CRIU's TLS page server (restored by rcriu) and
//!   CRIU's dump to rcriu's (restored by CRIU); CRIU's client with a
//!   certificate for another host is refused by rcriu's server, and CRIU's
//!   server with a certificate of the other CA by rcriu's dump.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use rcriu::images::ImageDir;
use rcriu::images::pages::PE_PRESENT;
use rcriu_test_support::pki::Pki;
use rcriu_test_support::{ProcSnapshot, TempDir, require_root};

mod page_server_shared;
use page_server_shared::*;

/// A TCP proxy to `port` on 127.0.0.1 that records what the client
/// sends; its port, the record, and the thread to join once the session
/// is over.
fn recording_proxy(port: u16) -> (u16, Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let me = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let t = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
            let _ = c2.shutdown(std::net::Shutdown::Write);
        });
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        back.join().unwrap();
    });
    (me, seen, t)
}

/// The 32 bytes of PS_IOV_OPEN2 for the pagemap of `pid`.
fn open2(pid: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&4u32.to_ne_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0u64.to_ne_bytes());
    b.extend_from_slice(&0u64.to_ne_bytes());
    b.extend_from_slice(&(((pid as u64) << 8) | 1).to_ne_bytes());
    b
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// How a dump goes: the engines, the arguments of each side, and what
/// is checked.
struct Case<'a> {
    dumper: &'a str,
    server: &'a str,
    /// `None`: rcriu's library.
    restorer: Option<&'a str>,
    dump_args: Vec<String>,
    server_args: Vec<String>,
    flip: bool,
    /// Through a proxy recording the client's bytes: whether the OPEN2
    /// request went in the clear.
    proxy: bool,
}

/// bigmem (16 MiB) dumped through the page server and restored; with
/// the proxy, whether the request was seen in the clear.
fn through(c: &Case<'_>) -> Result<bool, String> {
    let w = bigmem(16);
    let ps_dir = TempDir::new("tls-server");
    let dump_dir = TempDir::new("tls-dump");
    let s = Server::start(c.server, ps_dir.path(), &c.server_args);
    let (port, seen, proxy) = if c.proxy {
        let (p, seen, t) = recording_proxy(s.port);
        (p, Some(seen), Some(t))
    } else {
        (s.port, None, None)
    };
    dump(c.dumper, w.pid, dump_dir.path(), port, &c.dump_args)?;
    let (status, log) = s.wait();
    assert_eq!(status, 0, "the page server's session: {log}");
    let clear = match (proxy, seen) {
        (Some(t), Some(seen)) => {
            t.join().unwrap();
            let seen = seen.lock().unwrap();
            assert!(seen.len() > 16 << 20, "the proxy saw {} bytes", seen.len());
            contains(&seen, &open2(w.pid))
        }
        _ => false,
    };
    rcriu_test_support::wait_exit(w.pid).ok();
    if c.flip {
        flip_big_area_byte(ps_dir.path(), &w);
    }
    combine(ps_dir.path(), dump_dir.path());
    restore_with(c.restorer, dump_dir.path())?;
    w.verdict()?;
    Ok(clear)
}

#[test]
fn a_dump_through_tls_restores_and_nothing_goes_in_the_clear() {
    let _g = setup();
    let pki = Pki::new();
    let mut c = Case {
        dumper: RCRIU,
        server: RCRIU,
        restorer: None,
        dump_args: pki.args("ca", "client"),
        server_args: pki.args("ca", "server"),
        flip: false,
        proxy: true,
    };
    assert!(
        !through(&c).expect("a dump through TLS"),
        "a request went in the clear through TLS"
    );
    c.proxy = false;
    c.flip = true;
    let e = through(&c).expect_err("the negative control passes");
    assert!(e.contains("memory changed"), "{e}");
    // Without --tls, the proxy sees the request: it would have noticed.
    c.flip = false;
    c.proxy = true;
    c.dump_args.clear();
    c.server_args.clear();
    assert!(
        through(&c).expect("a plain dump"),
        "the proxy did not see the plain request"
    );
}

/// A dump of bigmem that must be refused: its error, once the target is
/// seen running exactly as before and the dump's directory holds no
/// image; the server's exit status and log.
fn refused(dump_args: &[String], server_args: &[String]) -> (String, i32, String) {
    let w = bigmem(16);
    let before = ProcSnapshot::take(w.pid);
    let ps_dir = TempDir::new("tls-refused-server");
    let dump_dir = TempDir::new("tls-refused-dump");
    let s = Server::start(RCRIU, ps_dir.path(), server_args);
    let e = dump(RCRIU, w.pid, dump_dir.path(), s.port, dump_args).expect_err("the dump succeeds");
    let (status, log) = s.wait();
    let after = ProcSnapshot::settled(w.pid, &before);
    let diff = before.diff(&after);
    assert!(diff.is_empty(), "the target changed:\n{}", diff.join("\n"));
    for d in [dump_dir.path(), ps_dir.path()] {
        let left: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".img"))
            .collect();
        assert!(left.is_empty(), "images left in {}: {left:?}", d.display());
    }
    w.verdict().expect("the target is intact");
    (e, status, log)
}

/// A dump of bigmem that must go through (the control of a refusal).
fn accepted(dump_args: &[String], server_args: &[String]) {
    let w = bigmem(4);
    let ps_dir = TempDir::new("tls-accepted-server");
    let dump_dir = TempDir::new("tls-accepted-dump");
    let s = Server::start(RCRIU, ps_dir.path(), server_args);
    dump(RCRIU, w.pid, dump_dir.path(), s.port, dump_args).expect("the control dump");
    let (status, log) = s.wait();
    assert_eq!(status, 0, "the control's page server: {log}");
}

#[test]
fn a_server_of_another_ca_is_refused_by_name() {
    let _g = setup();
    let pki = Pki::new();
    let (e, status, _) = refused(&pki.args("ca", "client"), &pki.args("ca", "stranger"));
    assert!(e.contains("TLS with 127.0.0.1:"), "{e}");
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert_ne!(status, 0, "the server took the session");
    // The dump trusting only the other CA refuses the good server too.
    let (e, _, _) = refused(&pki.args("ca2", "client"), &pki.args("ca", "server"));
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[test]
fn a_server_certificate_for_another_host_is_refused_unless_no_cn_verify() {
    let _g = setup();
    let pki = Pki::new();
    let (e, _, _) = refused(&pki.args("ca", "client"), &pki.args("ca", "elsewhere"));
    assert!(e.contains("not valid for name"), "{e}");
    let mut skip = pki.args("ca", "client");
    skip.push("--tls-no-cn-verify".into());
    accepted(&skip, &pki.args("ca", "elsewhere"));
}

#[test]
fn a_client_certificate_for_another_host_is_refused_unless_no_cn_verify() {
    let _g = setup();
    let pki = Pki::new();
    let (e, status, log) = refused(&pki.args("ca", "elsewhere"), &pki.args("ca", "server"));
    assert!(e.contains("page server"), "{e}");
    assert!(e.contains("BadCertificate"), "{e}");
    assert_ne!(status, 0, "the server took the session");
    assert!(log.contains("not valid for name"), "{log}");
    let mut skip = pki.args("ca", "server");
    skip.push("--tls-no-cn-verify".into());
    accepted(&pki.args("ca", "elsewhere"), &skip);
}

#[test]
fn a_revoked_client_certificate_is_refused() {
    let _g = setup();
    let pki = Pki::new();
    let mut server = pki.args("ca", "server");
    server.extend(["--tls-cacrl".into(), pki.path("crl.pem")]);
    let (e, status, log) = refused(&pki.args("ca", "revoked"), &server);
    assert!(e.contains("CertificateRevoked"), "{e}");
    assert_ne!(status, 0);
    assert!(log.contains("Revoked"), "{log}");
    // The list revokes that one only.
    accepted(&pki.args("ca", "client"), &server);
    // A list that cannot be read is refused by name before anything.
    let mut bad = pki.args("ca", "server");
    bad.extend(["--tls-cacrl".into(), pki.path("no-such-crl.pem")]);
    let out = Command::new(RCRIU)
        .args(["page-server", "--port", "1", "-D"])
        .arg(pki.dir())
        .args(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no-such-crl.pem"), "{err}");
}

#[test]
fn plain_and_tls_do_not_meet() {
    let _g = setup();
    let pki = Pki::new();
    // A plain dump to a TLS server.
    let (e, status, log) = refused(&[], &pki.args("ca", "server"));
    assert!(e.contains("page server"), "{e}");
    assert_ne!(status, 0, "the TLS server took a plain session");
    assert!(log.contains("TLS with 127.0.0.1:"), "{log}");
    // A TLS dump to a plain server: refused before the process is seized.
    let (e, _, _) = refused(&pki.args("ca", "client"), &[]);
    assert!(e.contains("TLS with 127.0.0.1:"), "{e}");
    // --ps-socket with --tls: the dump would make no TLS session on it.
    let w = bigmem(1);
    let dir = TempDir::new("tls-ps-socket");
    let out = Command::new(RCRIU)
        .args(["dump", "-t", &w.pid.to_string(), "-D"])
        .arg(dir.path())
        .args(["--page-server", "--ps-socket", "0"])
        .args(pki.args("ca", "client"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--tls with --ps-socket"), "{err}");
    w.verdict().expect("the target is intact");
}

/// A rustls client of the test's own: with `cert`, or none.
fn raw_client(pki: &Pki, cert: Option<&str>, port: u16) -> std::io::Result<i32> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        None => b.with_no_client_auth(),
        Some(name) => {
            let chain = CertificateDer::pem_file_iter(pki.path(&format!("{name}.pem")))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    // PS_IOV_CLOSE at once, and its status.
    let mut close = vec![0u8; 32];
    close[..4].copy_from_slice(&0x1023u32.to_ne_bytes());
    s.write_all(&close)?;
    s.flush()?;
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    s.conn.send_close_notify();
    let _ = s.flush();
    Ok(i32::from_ne_bytes(b))
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    require_root();
    let pki = Pki::new();
    let dir = TempDir::new("tls-anon");
    let s = Server::start(RCRIU, dir.path(), &pki.args("ca", "server"));
    let e = raw_client(&pki, None, s.port).expect_err("the server answered");
    let (status, log) = s.wait();
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
    assert_ne!(status, 0);
    assert!(log.contains("TLS with 127.0.0.1:"), "{log}");
    // The same client with a certificate gets its answer.
    let dir = TempDir::new("tls-anon-control");
    let s = Server::start(RCRIU, dir.path(), &pki.args("ca", "server"));
    assert_eq!(
        raw_client(&pki, Some("client"), s.port).expect("a session"),
        0
    );
    let (status, log) = s.wait();
    assert_eq!(status, 0, "{log}");
}

#[test]
fn tls_with_criu_both_ways() {
    let _g = setup();
    let Ok(criu) = std::env::var("RCRIU_TEST_CRIU") else {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping TLS across engines");
        return;
    };
    let pki = Pki::new();
    let mut c = Case {
        dumper: RCRIU,
        server: &criu,
        restorer: None,
        dump_args: pki.args("ca", "client"),
        server_args: pki.args("ca", "server"),
        flip: false,
        proxy: true,
    };
    assert!(
        !through(&c).expect("rcriu's dump to CRIU's TLS page server"),
        "in the clear"
    );
    c.dumper = &criu;
    c.server = RCRIU;
    c.restorer = Some(&criu);
    assert!(
        !through(&c).expect("CRIU's dump to rcriu's TLS page server"),
        "in the clear"
    );
    c.flip = true;
    c.proxy = false;
    let e = through(&c).expect_err("the negative control passes");
    assert!(e.contains("memory changed"), "{e}");

    // CRIU's client with a certificate for another host: rcriu's server
    // refuses it.
    let w = bigmem(4);
    let ps_dir = TempDir::new("tls-criu-refused");
    let dump_dir = TempDir::new("tls-criu-refused-dump");
    let s = Server::start(RCRIU, ps_dir.path(), &pki.args("ca", "server"));
    let e = dump(
        &criu,
        w.pid,
        dump_dir.path(),
        s.port,
        &pki.args("ca", "elsewhere"),
    )
    .expect_err("CRIU's dump went through");
    let (status, log) = s.wait();
    assert_ne!(status, 0, "{e}");
    assert!(log.contains("not valid for name"), "{log}");
    w.verdict().expect("CRIU left its target intact");

    // CRIU's server with a certificate of the other CA: rcriu's dump
    // refuses it, the target as before.
    let w = bigmem(4);
    let before = ProcSnapshot::take(w.pid);
    let ps_dir = TempDir::new("tls-criu-stranger");
    let dump_dir = TempDir::new("tls-criu-stranger-dump");
    let s = Server::start(&criu, ps_dir.path(), &pki.args("ca", "stranger"));
    let e = dump(
        RCRIU,
        w.pid,
        dump_dir.path(),
        s.port,
        &pki.args("ca", "client"),
    )
    .expect_err("rcriu's dump went through");
    drop(s);
    assert!(e.contains("UnknownIssuer"), "{e}");
    let after = ProcSnapshot::settled(w.pid, &before);
    assert!(before.diff(&after).is_empty(), "the target changed");
    w.verdict().expect("the target is intact");
}

#[test]
fn a_pre_dump_goes_through_tls() {
    let _g = setup();
    let pki = Pki::new();
    let w = bigmem(16);
    let ps_dir = TempDir::new("tls-predump-server");
    let dump_dir = TempDir::new("tls-predump");
    let s = Server::start(RCRIU, ps_dir.path(), &pki.args("ca", "server"));
    let (port, seen, proxy) = recording_proxy(s.port);
    run(Command::new(RCRIU)
        .args(["pre-dump", "-t", &w.pid.to_string(), "-D"])
        .arg(dump_dir.path())
        .args([
            "--track-mem",
            "--page-server",
            "--address",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .args(["-v4", "-o", "pre-dump.log"])
        .args(pki.args("ca", "client")))
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(dump_dir.path().join("pre-dump.log")).unwrap_or_default()
        )
    });
    let (status, log) = s.wait();
    assert_eq!(status, 0, "{log}");
    proxy.join().unwrap();
    assert!(
        !contains(&seen.lock().unwrap(), &open2(w.pid)),
        "a request went in the clear"
    );
    // Every present page of the server's pagemap is in its pages image.
    let d = ImageDir::open(ps_dir.path()).unwrap();
    let mut pm = d.pagemap(w.pid as u32).expect("the server's pagemap");
    let mut bytes = 0;
    while let Some(r) = pm.next_run().unwrap() {
        if r.flags & PE_PRESENT != 0 {
            bytes += r.nr_pages * 4096;
        }
    }
    let pages = std::fs::metadata(ps_dir.path().join(format!("pages-{}.img", pm.pages_id())))
        .unwrap()
        .len();
    assert!(bytes >= 16 << 20, "{bytes} bytes of present pages");
    assert_eq!(pages, bytes, "the pages image against its pagemap");
    w.verdict().expect("the pre-dumped process runs on intact");
}

/// `page-server --ps-socket` on the end the test accepted of a dump's
/// connection, with `server_args`; the dump's outcome (restored) and
/// the server's status and log.
fn given_socket(pki: &Pki, server_args: &[String]) -> (Result<(), String>, i32, String) {
    let w = bigmem(8);
    let ps_dir = TempDir::new("tls-given-server");
    let dump_dir = TempDir::new("tls-given-dump");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dumper = Command::new(RCRIU)
        .args(["dump", "-t", &w.pid.to_string(), "-D"])
        .arg(dump_dir.path())
        .args(["--page-server", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["-v4", "-o", "dump.log"])
        .args(pki.args("ca", "client"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (theirs, _) = l.accept().unwrap();
    drop(l);
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty()).unwrap();
    let log = ps_dir.path().join("ps.log");
    let mut server = Command::new(RCRIU)
        .args([
            "page-server",
            "--ps-socket",
            &theirs.as_raw_fd().to_string(),
            "-D",
        ])
        .arg(ps_dir.path())
        .args(["-v4", "-o"])
        .arg(&log)
        .args(server_args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    drop(theirs);
    let out = dumper.wait_with_output().unwrap();
    let status = server.wait().unwrap().code().unwrap_or(-1);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    if !out.status.success() {
        return (
            Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            status,
            log,
        );
    }
    rcriu_test_support::wait_exit(w.pid).ok();
    combine(ps_dir.path(), dump_dir.path());
    let r = rcriu::Restore::new(dump_dir.path())
        .detach(true)
        .run()
        .map_err(|e| format!("restoring: {e}"))
        .and_then(|_| w.verdict());
    (r, status, log)
}

#[test]
fn a_page_server_on_a_given_socket_speaks_tls() {
    let _g = setup();
    let pki = Pki::new();
    let (r, status, log) = given_socket(&pki, &pki.args("ca", "server"));
    assert_eq!(status, 0, "{log}");
    r.expect("restored from the images sent through TLS on a given socket");
    // Without --tls, the server takes the TLS handshake for requests.
    let (r, status, _) = given_socket(&pki, &[]);
    let e = r.expect_err("a plain server took a TLS dump");
    assert!(e.contains("TLS with 127.0.0.1:"), "{e}");
    assert_ne!(status, 0);
}
