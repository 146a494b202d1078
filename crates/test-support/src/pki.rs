//! A PKI made at test time for the page server's TLS (never a key
//! committed): two CAs, certificates for 127.0.0.1 and for another host,
//! one of the other CA, one revoked by a revocation list.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::TempDir;

/// The test's PKI, in a directory of its own.
pub struct Pki {
    dir: TempDir,
}

/// The serial number of the certificate the revocation list revokes.
const REVOKED_SERIAL: u64 = 0x7e57;

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    /// Makes `ca.pem` and `ca2.pem` (two CAs), and as `NAME.pem` with
    /// `NAME.key`: `server` and `client` (for 127.0.0.1 and localhost,
    /// of the CA), `elsewhere` (for elsewhere.example, of the CA),
    /// `stranger` (for 127.0.0.1, of the other CA), `revoked` (for
    /// 127.0.0.1, of the CA, in `crl.pem`).
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa,
            Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
            date_time_ymd,
        };
        let dir = TempDir::new("tls-pki");
        let write = |name: &str, text: &str, mode: u32| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(dir.path().join(name))
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .unwrap_or_else(|e| panic!("writing {name}: {e}"));
        };
        let ca = |name: &str, cn: &str| {
            let key = KeyPair::generate().expect("a CA key");
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = p.self_signed(&key).expect("a CA certificate");
            write(&format!("{name}.pem"), &cert.pem(), 0o644);
            Issuer::new(p, key)
        };
        let ca1 = ca("ca", "rcriu test CA");
        let ca2 = ca("ca2", "rcriu other test CA");
        let leaf = |name: &str, sans: &[&str], issuer: &Issuer<'_, KeyPair>, serial: u64| {
            let key = KeyPair::generate().expect("a key");
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .expect("parameters");
            p.distinguished_name.push(DnType::CommonName, sans[0]);
            p.serial_number = Some(SerialNumber::from(serial));
            p.use_authority_key_identifier_extension = true;
            let cert = p.signed_by(&key, issuer).expect("a certificate");
            write(&format!("{name}.pem"), &cert.pem(), 0o644);
            write(&format!("{name}.key"), &key.serialize_pem(), 0o600);
        };
        leaf("server", &["127.0.0.1", "localhost"], &ca1, 1);
        leaf("client", &["127.0.0.1", "localhost"], &ca1, 2);
        leaf("elsewhere", &["elsewhere.example"], &ca1, 3);
        leaf("stranger", &["127.0.0.1", "localhost"], &ca2, 4);
        leaf("revoked", &["127.0.0.1", "localhost"], &ca1, REVOKED_SERIAL);
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(2090, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(REVOKED_SERIAL),
                revocation_time: date_time_ymd(2021, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca1)
        .expect("a revocation list");
        write("crl.pem", &crl.pem().expect("the list in PEM"), 0o644);
        Pki { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of file `name` in it.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// `--tls` with `ca` trusted and the certificate `me`.
    pub fn args(&self, ca: &str, me: &str) -> Vec<String> {
        vec![
            "--tls".into(),
            "--tls-cacert".into(),
            self.path(&format!("{ca}.pem")),
            "--tls-cert".into(),
            self.path(&format!("{me}.pem")),
            "--tls-key".into(),
            self.path(&format!("{me}.key")),
        ]
    }
}
