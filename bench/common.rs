//! Argument and PEM helpers shared by the benchmark programs.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: Option<&str>) -> String {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            return args
                .next()
                .unwrap_or_else(|| panic!("{name} needs a value"));
        }
    }
    default
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("missing {name}"))
}

/// The certificate chain and key named by `--cert` and `--key`.
pub fn cert_and_key() -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let certs = CertificateDer::pem_file_iter(arg("--cert", None))
        .expect("--cert")
        .collect::<Result<_, _>>()
        .expect("--cert");
    let key = PrivateKeyDer::from_pem_file(arg("--key", None)).expect("--key");
    (certs, key)
}

/// The CA certificates named by `--ca`.
pub fn roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(arg("--ca", None)).expect("--ca") {
        roots.add(ca.expect("--ca")).expect("--ca");
    }
    roots
}
