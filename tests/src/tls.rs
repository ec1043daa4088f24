//! HTTPS for the stand-ins: a certificate authority made for this test run, trusted only
//! through `SSL_CERT_FILE`, as production code trusts the system's roots.
//!
//! [`install`] runs before `main` in every test binary that talks to a stand-in (the
//! suite's `main.rs` and the benches declare it with `#[ctor::ctor]`): it makes a fresh CA
//! (ECDSA P-256), writes its certificate to a private temporary file and
//! points `SSL_CERT_FILE` at it (and `SSL_CERT_DIR` at an empty directory), so that everything in the process and every child it
//! starts (the `tozai` binary, the Lambdas, libgit2's OpenSSL, the AWS SDK's rustls) trusts
//! this CA and nothing else. It must run before `main` because OpenSSL and the SDK read
//! `SSL_CERT_FILE` once, when first used, and because changing the environment once threads
//! run is unsound. `GIT_SSL_CAINFO` is set too, for the git CLI (curl ignores
//! `SSL_CERT_FILE`); awscli and botocore get the CA through `AWS_CA_BUNDLE` in the commands
//! that run them ([`crate::server::AwsCli`]), never through tozai.
//!
//! Each stand-in asks [`run_ca`] for a server certificate ([`Authority::issue`]) for
//! `127.0.0.1` and `localhost`. Tests of refusals make certificates tozai must refuse: from
//! [`Authority::new`] (another CA, never trusted) or for another host name.
//!
//! A binary that forgot [`install`] fails loudly on its first stand-in, never silently in
//! plain HTTP.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// A certificate authority that signs server certificates for the stand-ins.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A server certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// The certificate followed by its CA's, as servers send the chain.
    pub chain: PathBuf,
    pub key: PathBuf,
}

impl Authority {
    /// A new CA named `name`. Only the run's CA ([`run_ca`]) is trusted.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("cannot generate a CA key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("cannot sign the CA");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (host names or IP addresses), written under `dir`
    /// as `NAME.pem` (with the CA's certificate after it) and `NAME.key`.
    pub fn issue(&self, names: &[&str], dir: &Path, file_name: &str) -> ServerCert {
        let key = KeyPair::generate().expect("cannot generate a server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid certificate names");
        params
            .distinguished_name
            .push(DnType::CommonName, "tozai test server");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("cannot sign a server certificate");
        self.write(&cert.pem(), &key.serialize_pem(), dir, file_name)
    }
}

impl Authority {
    /// A server certificate naming `host` in its subject's common name only (no subject
    /// alternative name), written like [`issue`](Self::issue)'s.
    pub fn issue_common_name_only(&self, host: &str, dir: &Path, file_name: &str) -> ServerCert {
        let key = KeyPair::generate().expect("cannot generate a server key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("cannot sign a server certificate");
        self.write(&cert.pem(), &key.serialize_pem(), dir, file_name)
    }

    fn write(&self, cert_pem: &str, key_pem: &str, dir: &Path, file_name: &str) -> ServerCert {
        let chain = format!("{cert_pem}{}", self.pem);
        let out = ServerCert {
            chain: dir.join(format!("{file_name}.pem")),
            key: dir.join(format!("{file_name}.key")),
        };
        write_private(&out.chain, &chain);
        write_private(&out.key, key_pem);
        out
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

struct RunCa {
    authority: Authority,
    file: PathBuf,
}

static RUN_CA: OnceLock<RunCa> = OnceLock::new();

/// Makes this run's CA and points `SSL_CERT_FILE` (and `GIT_SSL_CAINFO`) at it. Call it
/// before `main`, from `#[ctor::ctor(unsafe)]`, once per test binary. The CA lives in
/// `$TMPDIR/tozai-test-ca-PID/`; the directories of runs that have ended are removed.
pub fn install() {
    remove_ended_runs();
    let dir = std::env::temp_dir().join(format!("{CA_DIR_PREFIX}{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("cannot create the test CA's directory");
    let authority = Authority::new("tozai test run CA");
    let file = dir.join("ca.pem");
    write_private(&file, authority.pem());
    // An empty directory for SSL_CERT_DIR: set, so that libgit2's start-up (openssl-probe)
    // does not point it at the system's store, and empty, so that the run's CA is the only
    // one trusted.
    let no_dir = dir.join("no-other-ca");
    fs::create_dir_all(&no_dir).expect("cannot create the test CA's directory");
    // SAFETY: called before main, while the process has one thread.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", &file);
        std::env::set_var("SSL_CERT_DIR", &no_dir);
        std::env::set_var("GIT_SSL_CAINFO", &file);
    }
    // libgit2's one-time start-up, while there is still one thread (tozai's binaries do
    // the same first thing in main).
    tozai::adapters::git_mirror::init_tls();
    let _ = RUN_CA.set(RunCa { authority, file });
}

const CA_DIR_PREFIX: &str = "tozai-test-ca-";

/// Removes the CA directories of test processes that are gone.
fn remove_ended_runs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(CA_DIR_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn installed() -> &'static RunCa {
    let ca = RUN_CA.get().unwrap_or_else(|| {
        panic!(
            "this test binary has no test CA: declare `#[ctor::ctor(unsafe)] fn ca() \
             {{ tozai_tests::tls::install() }}` in it (see tests/tests/suite/main.rs)"
        )
    });
    assert_eq!(
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
        Some(ca.file.clone()),
        "SSL_CERT_FILE no longer names this run's CA"
    );
    ca
}

/// This run's CA, the one `SSL_CERT_FILE` names.
pub fn run_ca() -> &'static Authority {
    &installed().authority
}

/// The file `SSL_CERT_FILE` names: this run's CA certificate.
pub fn ca_file() -> &'static Path {
    &installed().file
}

/// Who a TLS client expects at the other end: a certificate for `name` signed by the CA
/// whose certificate is `ca_pem`.
#[derive(Debug, Clone)]
pub struct Expected {
    pub ca_pem: String,
    pub name: String,
}

impl Expected {
    /// A certificate for `127.0.0.1` from this run's CA: what every stand-in serves by default.
    pub fn run_ca() -> Self {
        Self {
            ca_pem: run_ca().pem().to_owned(),
            name: "127.0.0.1".into(),
        }
    }
}

/// Sends `request` over TLS to `127.0.0.1:port`, checking the server's certificate against
/// `expected`, and returns everything the server sent until it closed the connection
/// (HTTP/1.0-style exchanges). For stand-ins' readiness checks and raw HTTP tests.
pub fn https_exchange(
    port: u16,
    expected: &Expected,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let name = ServerName::try_from(expected.name.clone()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(client_config(&expected.ca_pem)?, name)
        .map_err(std::io::Error::other)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request)?;
    tls.flush()?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        // Servers that close without close_notify: what arrived is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => Ok(answer),
        Err(e) => Err(e),
    }
}

fn client_config(ca_pem: &str) -> std::io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
