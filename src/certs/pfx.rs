//! PKCS#12 (PFX) files for the Windows certificate store.
//!
//! A bot on Windows keeps its client certificate in the bot user's store
//! (`Cert:\CurrentUser\My`), imported from a `.pfx` file with
//! `Import-PfxCertificate`. [`encode`] writes one that holds the bot's key,
//! its certificate and the CA certificate, in the form that Windows 10 1709
//! and later, Windows Server 2019 and later, and OpenSSL 3 all read:
//!
//! - the key in a shrouded key bag and the certificates in an encrypted
//!   content, both PBES2: PBKDF2 with HMAC-SHA256 and AES-256-CBC, each with
//!   its own salt and IV;
//! - a MAC over the contents, HMAC-SHA256 with the key from the PKCS#12 key
//!   derivation (RFC 7292, appendix B);
//! - on the key and on the bot certificate, a `friendlyName` and the same
//!   `localKeyId`, which is how Windows pairs a certificate with its key.
//!
//! Every derivation runs [`ITERATIONS`] times; see there for the number.
//! The password is held in a [`Password`], whose bytes are wiped on drop.

use std::num::NonZeroU32;

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};
use yasna::models::ObjectIdentifier;
use yasna::{DERWriter, Tag};
use zeroize::Zeroizing;

use super::CertError;
use crate::secret::WipedBuf;

/// Iterations of PBKDF2 (for each of the two encryptions) and of the MAC's
/// key derivation: five times what Windows' own exports use (2000) and
/// OpenSSL 3 writes by default (2048). Far higher counts, such as the
/// 600000 advised for stored password hashes, make `Import-PfxCertificate`
/// slow, and .NET's PKCS#12 loader caps the counts it accepts per derivation
/// and per file (`Pkcs12LoaderLimits`). The password, when botward makes
/// it, has about 143 bits, so the count is not what protects it.
pub const ITERATIONS: u32 = 10_000;

/// Length of a generated password, in characters.
pub const GENERATED_PASSWORD_LEN: usize = 24;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

const SALT_LEN: usize = 16;

/// PKCS#12 key derivation purpose: a MAC key (RFC 7292, B.3).
const KDF_ID_MAC: u8 = 3;

mod oid {
    pub const DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
    pub const ENCRYPTED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 6];
    pub const SHROUDED_KEY_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 2];
    pub const CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
    pub const X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
    pub const FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
    pub const LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113549, 1, 9, 21];
    pub const PBES2: &[u64] = &[1, 2, 840, 113549, 1, 5, 13];
    pub const PBKDF2: &[u64] = &[1, 2, 840, 113549, 1, 5, 12];
    pub const HMAC_WITH_SHA256: &[u64] = &[1, 2, 840, 113549, 2, 9];
    pub const AES256_CBC: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];
    pub const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
}

/// A PFX password: printable ASCII, not empty, wiped on drop. Its `Debug`
/// shows only its length.
///
/// ASCII because the two derivations encode it differently (PBKDF2 takes
/// its bytes, the MAC's derivation its UTF-16 form), and readers disagree on
/// how to do that outside ASCII.
#[derive(Debug)]
pub struct Password(WipedBuf);

// === impl Password ===

impl Password {
    /// A random password of [`GENERATED_PASSWORD_LEN`] letters and digits
    /// (about 143 bits).
    pub fn generate() -> Result<Password, CertError> {
        let rng = SystemRandom::new();
        let mut buf = WipedBuf::with_capacity(GENERATED_PASSWORD_LEN);
        let mut bytes = Zeroizing::new([0u8; 64]);
        while buf.len() < GENERATED_PASSWORD_LEN {
            rng.fill(&mut bytes[..])
                .map_err(|_| CertError("no randomness for the PFX password".into()))?;
            // Rejection sampling: 248 = 4 × 62, so every letter is as likely.
            for b in bytes
                .iter()
                .filter(|b| usize::from(**b) < 4 * ALPHABET.len())
            {
                if buf.len() < GENERATED_PASSWORD_LEN {
                    buf.extend_from_slice(&[ALPHABET[usize::from(*b) % ALPHABET.len()]]);
                }
            }
        }
        Ok(Password(buf))
    }

    /// The first line of a password file's contents, without its line end
    /// (`\n` or `\r\n`). An empty line or one with other than printable
    /// ASCII is refused; the message never quotes it.
    pub fn from_file_contents(contents: &[u8]) -> Result<Password, CertError> {
        let line = contents.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Err(CertError(
                "the PFX password file's first line is empty".into(),
            ));
        }
        if !line.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(CertError(
                "the PFX password may hold only printable ASCII characters".into(),
            ));
        }
        let mut buf = WipedBuf::with_capacity(line.len());
        buf.extend_from_slice(line);
        Ok(Password(buf))
    }

    /// The password's characters (ASCII, so also its UTF-8 bytes).
    pub fn expose_secret(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The password as the MAC's derivation takes it: a BMPString, UTF-16
    /// big-endian, with a trailing zero character (RFC 7292, B.1).
    fn bmp(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(2 * self.0.len() + 2));
        for b in self.expose_secret() {
            out.extend_from_slice(&[0, *b]);
        }
        out.extend_from_slice(&[0, 0]);
        out
    }
}

/// What goes into a PFX file.
pub struct Contents<'a> {
    /// The bot's private key, PKCS#8 DER.
    pub key_pkcs8: &'a [u8],
    /// The bot's certificate, DER.
    pub cert_der: &'a [u8],
    /// CA certificates, DER, without key or attributes.
    pub ca_der: &'a [&'a [u8]],
    /// The `friendlyName` of the key and the bot certificate.
    pub friendly_name: &'a str,
}

/// The DER of a PFX file holding `contents`, encrypted and MACed with
/// `password`, with fresh random salts and IVs.
pub fn encode(contents: &Contents<'_>, password: &Password) -> Result<Vec<u8>, CertError> {
    let rng = SystemRandom::new();
    let local_key_id = digest::digest(&digest::SHA256, contents.cert_der);
    let attrs = BagAttributes {
        friendly_name: contents.friendly_name,
        local_key_id: local_key_id.as_ref(),
    };
    let certs = yasna::construct_der(|w| {
        w.write_sequence_of(|w| {
            cert_bag(w.next(), contents.cert_der, Some(&attrs));
            for ca in contents.ca_der {
                cert_bag(w.next(), ca, None);
            }
        })
    });
    let certs = Pbes2::encrypt(password, &certs, &rng)?;
    let key = Pbes2::encrypt(password, contents.key_pkcs8, &rng)?;
    let keys =
        yasna::construct_der(|w| w.write_sequence_of(|w| shrouded_key_bag(w.next(), &key, &attrs)));
    let auth_safe = yasna::construct_der(|w| {
        w.write_sequence_of(|w| {
            encrypted_content_info(w.next(), &certs);
            data_content_info(w.next(), &keys);
        })
    });
    let mut mac_salt = [0u8; SALT_LEN];
    fill(&rng, &mut mac_salt)?;
    let mac = Mac::compute(password, &auth_safe, mac_salt);
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(3);
            data_content_info(w.next(), &auth_safe);
            mac.write(w.next());
        })
    }))
}

struct BagAttributes<'a> {
    friendly_name: &'a str,
    local_key_id: &'a [u8],
}

fn write_oid(w: DERWriter<'_>, oid: &[u64]) {
    w.write_oid(&ObjectIdentifier::from_slice(oid));
}

/// `SET OF Attribute`: friendlyName (BMPString) and localKeyId.
fn write_attributes(w: DERWriter<'_>, attrs: &BagAttributes<'_>) {
    w.write_set_of(|w| {
        w.next().write_sequence(|w| {
            write_oid(w.next(), oid::FRIENDLY_NAME);
            w.next()
                .write_set_of(|w| w.next().write_bmp_string(attrs.friendly_name));
        });
        w.next().write_sequence(|w| {
            write_oid(w.next(), oid::LOCAL_KEY_ID);
            w.next()
                .write_set_of(|w| w.next().write_bytes(attrs.local_key_id));
        });
    });
}

/// A `SafeBag` holding a `CertBag` with an X.509 certificate.
fn cert_bag(w: DERWriter<'_>, cert_der: &[u8], attrs: Option<&BagAttributes<'_>>) {
    w.write_sequence(|w| {
        write_oid(w.next(), oid::CERT_BAG);
        w.next().write_tagged(Tag::context(0), |w| {
            w.write_sequence(|w| {
                write_oid(w.next(), oid::X509_CERTIFICATE);
                w.next()
                    .write_tagged(Tag::context(0), |w| w.write_bytes(cert_der));
            })
        });
        if let Some(attrs) = attrs {
            write_attributes(w.next(), attrs);
        }
    });
}

/// A `SafeBag` holding an `EncryptedPrivateKeyInfo`.
fn shrouded_key_bag(w: DERWriter<'_>, key: &Pbes2, attrs: &BagAttributes<'_>) {
    w.write_sequence(|w| {
        write_oid(w.next(), oid::SHROUDED_KEY_BAG);
        w.next().write_tagged(Tag::context(0), |w| {
            w.write_sequence(|w| {
                key.write_algorithm(w.next());
                w.next().write_bytes(&key.ciphertext);
            })
        });
        write_attributes(w.next(), attrs);
    });
}

/// `ContentInfo` of type data: `[0] EXPLICIT OCTET STRING`.
fn data_content_info(w: DERWriter<'_>, content: &[u8]) {
    w.write_sequence(|w| {
        write_oid(w.next(), oid::DATA);
        w.next()
            .write_tagged(Tag::context(0), |w| w.write_bytes(content));
    });
}

/// `ContentInfo` of type encryptedData (version 0), its encrypted content
/// `[0] IMPLICIT OCTET STRING`.
fn encrypted_content_info(w: DERWriter<'_>, enc: &Pbes2) {
    w.write_sequence(|w| {
        write_oid(w.next(), oid::ENCRYPTED_DATA);
        w.next().write_tagged(Tag::context(0), |w| {
            w.write_sequence(|w| {
                w.next().write_u8(0);
                w.next().write_sequence(|w| {
                    write_oid(w.next(), oid::DATA);
                    enc.write_algorithm(w.next());
                    w.next()
                        .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(&enc.ciphertext));
                });
            })
        });
    });
}

/// One PBES2 encryption: its parameters and the ciphertext.
struct Pbes2 {
    salt: [u8; SALT_LEN],
    iv: [u8; 16],
    iterations: u32,
    ciphertext: Vec<u8>,
}

// === impl Pbes2 ===

impl Pbes2 {
    fn encrypt(
        password: &Password,
        plaintext: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<Pbes2, CertError> {
        let mut salt = [0u8; SALT_LEN];
        let mut iv = [0u8; 16];
        fill(rng, &mut salt)?;
        fill(rng, &mut iv)?;
        let key = pbkdf2_key(password, &salt, ITERATIONS);
        Ok(Pbes2 {
            salt,
            iv,
            iterations: ITERATIONS,
            ciphertext: aes256_cbc(&key, &iv, plaintext)?,
        })
    }

    /// The `AlgorithmIdentifier`: PBES2 with PBKDF2 (salt, iterations,
    /// PRF hmacWithSHA256) and aes256-CBC with its IV.
    fn write_algorithm(&self, w: DERWriter<'_>) {
        w.write_sequence(|w| {
            write_oid(w.next(), oid::PBES2);
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    write_oid(w.next(), oid::PBKDF2);
                    w.next().write_sequence(|w| {
                        w.next().write_bytes(&self.salt);
                        w.next().write_u32(self.iterations);
                        w.next().write_sequence(|w| {
                            write_oid(w.next(), oid::HMAC_WITH_SHA256);
                            w.next().write_null();
                        });
                    });
                });
                w.next().write_sequence(|w| {
                    write_oid(w.next(), oid::AES256_CBC);
                    w.next().write_bytes(&self.iv);
                });
            });
        });
    }
}

/// The `MacData`: HMAC-SHA256 over the authenticated safe.
struct Mac {
    digest: hmac::Tag,
    salt: [u8; SALT_LEN],
    iterations: u32,
}

// === impl Mac ===

impl Mac {
    fn compute(password: &Password, auth_safe: &[u8], salt: [u8; SALT_LEN]) -> Mac {
        let key = pkcs12_kdf_sha256(&password.bmp(), &salt, KDF_ID_MAC, ITERATIONS);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key[..]);
        Mac {
            digest: hmac::sign(&key, auth_safe),
            salt,
            iterations: ITERATIONS,
        }
    }

    fn write(&self, w: DERWriter<'_>) {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    write_oid(w.next(), oid::SHA256);
                    w.next().write_null();
                });
                w.next().write_bytes(self.digest.as_ref());
            });
            w.next().write_bytes(&self.salt);
            w.next().write_u32(self.iterations);
        });
    }
}

fn fill(rng: &dyn SecureRandom, out: &mut [u8]) -> Result<(), CertError> {
    rng.fill(out)
        .map_err(|_| CertError("no randomness for the PFX file".into()))
}

/// A 32-byte PBKDF2-HMAC-SHA256 key from the password's bytes.
fn pbkdf2_key(password: &Password, salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
        salt,
        password.expose_secret(),
        &mut key[..],
    );
    key
}

/// AES-256-CBC with PKCS#7 padding.
fn aes256_cbc(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Result<Vec<u8>, CertError> {
    // Padding adds 1 to 16 bytes.
    let mut out = vec![0u8; (plaintext.len() / 16 + 1) * 16];
    let len = cbc::Encryptor::<aes::Aes256>::new(key.into(), iv.into())
        .encrypt_padded_b2b_mut::<Pkcs7>(plaintext, &mut out)
        .map_err(|_| CertError("AES-CBC output buffer too small".into()))?
        .len();
    out.truncate(len);
    Ok(out)
}

/// The PKCS#12 key derivation (RFC 7292, B.2) with SHA-256, for one hash
/// output (32 bytes, all a MAC key needs). `password` is the BMPString form
/// with its trailing zero character; `id` the purpose (1 key, 2 IV, 3 MAC).
fn pkcs12_kdf_sha256(password: &[u8], salt: &[u8], id: u8, iterations: u32) -> Zeroizing<[u8; 32]> {
    // v, SHA-256's block size in bytes.
    const V: usize = 64;
    // S and P: salt and password, each repeated to a multiple of v bytes.
    let repeat = |src: &[u8], out: &mut Vec<u8>| {
        out.extend(src.iter().cycle().take(src.len().div_ceil(V) * V));
    };
    let mut i = Zeroizing::new(Vec::with_capacity(salt.len() + password.len() + 2 * V));
    repeat(salt, &mut i);
    repeat(password, &mut i);
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[id; V]);
    ctx.update(&i);
    let mut a = ctx.finish();
    for _ in 1..iterations {
        a = digest::digest(&digest::SHA256, a.as_ref());
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(a.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use aes::cipher::BlockDecryptMut;
    use yasna::{ASN1Result, BERReader};

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn bmp(s: &str) -> Vec<u8> {
        let mut out: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
        out.extend_from_slice(&[0, 0]);
        out
    }

    fn password(s: &str) -> Password {
        Password::from_file_contents(s.as_bytes()).unwrap()
    }

    // Vectors from RustCrypto's pkcs12 crate (tests/kdf.rs), which OpenSSL's
    // PKCS12KDF reproduces.
    #[test]
    fn pkcs12_kdf_matches_published_sha256_vectors() {
        let p = bmp("ge@äheim");
        let salt = [1, 2, 3, 4, 5, 6, 7, 8];
        let cases = [
            (
                1,
                100,
                "fae4d4957a3cc781e1180b9d4fb79c1e0c8579b746a3177e5b0768a3118bf863",
            ),
            (
                2,
                100,
                "e5ff813bc6547de5155b14d2fada85b3201a977349db6e26ccc998d9e8f83d6c",
            ),
            (
                3,
                100,
                "136355ed9434516682534f46d63956db5ff06b844702c2c1f3b46321e2524a4d",
            ),
            (
                1,
                1000,
                "2b95a0569b63f641fae1efca32e84db3699ab74540628ba66283b58cf5400527",
            ),
            (
                2,
                1000,
                "6472c0ebad3fab4123e8b5ed7834de21eeb20187b3eff78a7d1cdffa4034851d",
            ),
            (
                3,
                1000,
                "3f9113f05c30a996c4a516409bdac9d065f44296ccd52bb75de3fcfdbe2bf130",
            ),
        ];
        for (id, iterations, want) in cases {
            let got = pkcs12_kdf_sha256(&p, &salt, id, iterations);
            assert_eq!(got[..], hex(want)[..], "id {id}, {iterations} iterations");
        }
    }

    // OpenSSL's PKCS12_key_gen, as published in Crypt::OpenSSL::PKCS::Func's
    // tests: a MAC key for "123456" with 2048 iterations.
    #[test]
    fn pkcs12_kdf_matches_openssl_mac_key() {
        let got = pkcs12_kdf_sha256(&bmp("123456"), &hex("e241f01650dbeae4"), 3, 2048);
        let want = hex("721259F14AAD70B58839F71566B433DA1B8AD08F650F4D02FAAA0B9B095BB51D");
        assert_eq!(got[..], want[..]);
    }

    #[test]
    fn password_bmp_form_is_utf16_big_endian_with_a_zero_character() {
        assert_eq!(*password("ab1").bmp(), bmp("ab1"));
        assert_eq!(*password("ab1").bmp(), [0, b'a', 0, b'b', 0, b'1', 0, 0]);
    }

    // NIST SP 800-38A, F.2.5 CBC-AES256.Encrypt; PKCS#7 adds one block of
    // sixteen 0x10 bytes to the four-block message.
    #[test]
    fn aes256_cbc_matches_nist_sp800_38a() {
        let key: [u8; 32] = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .try_into()
            .unwrap();
        let iv: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let pt = hex(
            "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710",
        );
        let want = hex(
            "f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d
             39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b",
        );
        let ct = aes256_cbc(&key, &iv, &pt).unwrap();
        assert_eq!(ct.len(), 80);
        assert_eq!(ct[..64], want[..]);
        assert_eq!(
            ct.len(),
            aes256_cbc(&key, &iv, &pt[..63]).unwrap().len() + 16
        );
    }

    #[test]
    fn pbes2_algorithm_identifier_der() {
        let enc = Pbes2 {
            salt: [0x11; 16],
            iv: [0x22; 16],
            iterations: 10_000,
            ciphertext: Vec::new(),
        };
        let der = yasna::construct_der(|w| enc.write_algorithm(w));
        let want = hex(&format!(
            "305f 0609 2a864886f70d01050d
               3052 3031 0609 2a864886f70d01050c
                         3024 0410 {salt} 0202 2710
                              300c 0608 2a864886f70d0209 0500
                    301d 0609 60864801650304012a 0410 {iv}",
            salt = "11".repeat(16),
            iv = "22".repeat(16)
        ));
        assert_eq!(der, want);
    }

    #[test]
    fn bag_attributes_der() {
        let attrs = BagAttributes {
            friendly_name: "ab",
            local_key_id: &[1, 2, 3, 4],
        };
        let der = yasna::construct_der(|w| write_attributes(w, &attrs));
        let want = hex("312a 3013 0609 2a864886f70d010914 3106 1e04 0061 0062
                  3013 0609 2a864886f70d010915 3106 0404 01020304");
        assert_eq!(der, want);
    }

    #[test]
    fn mac_data_der() {
        let mac = Mac::compute(&password("pw"), b"contents", [0x33; 16]);
        let key = pkcs12_kdf_sha256(&bmp("pw"), &[0x33; 16], 3, ITERATIONS);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key[..]), b"contents");
        let der = yasna::construct_der(|w| mac.write(w));
        let want = hex(&format!(
            "3049 3031 300d 0609 608648016503040201 0500 0420 {tag}
                  0410 {salt} 0202 2710",
            tag = tag
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            salt = "33".repeat(16)
        ));
        assert_eq!(der, want);
    }

    #[test]
    fn password_file_gives_its_first_line_without_the_line_end() {
        assert_eq!(password("s3cret pass\n").expose_secret(), b"s3cret pass");
        assert_eq!(password("s3cret\r\nsecond\n").expose_secret(), b"s3cret");
        assert_eq!(password("no newline").expose_secret(), b"no newline");
        for bad in ["", "\n", "\r\nsecond", "xyzzy-caf\u{e9}\n", "plugh\tthere"] {
            let e = Password::from_file_contents(bad.as_bytes()).unwrap_err();
            assert!(!e.0.contains("xyzzy") && !e.0.contains("plugh"), "{e}");
        }
    }

    #[test]
    fn generated_passwords_are_long_random_and_alphanumeric() {
        let a = Password::generate().unwrap();
        let b = Password::generate().unwrap();
        assert_eq!(a.expose_secret().len(), GENERATED_PASSWORD_LEN);
        assert!(a.expose_secret().iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a.expose_secret(), b.expose_secret());
        let text = std::str::from_utf8(a.expose_secret()).unwrap().to_owned();
        assert!(!format!("{a:?}").contains(&text));
    }

    // === a reader for the tests: checks every field and the MAC ===

    /// friendlyName and localKeyId.
    type Attrs = (String, Vec<u8>);
    /// A certificate's DER and its attributes, if it has any.
    type CertEntry = (Vec<u8>, Option<Attrs>);

    struct Decoded {
        key_pkcs8: Vec<u8>,
        key_attrs: Attrs,
        certs: Vec<CertEntry>,
    }

    struct Enc {
        salt: Vec<u8>,
        iterations: u32,
        iv: Vec<u8>,
    }

    fn expect_oid(r: BERReader<'_, '_>, want: &[u64]) -> ASN1Result<()> {
        assert_eq!(r.read_oid()?, ObjectIdentifier::from_slice(want));
        Ok(())
    }

    fn read_pbes2(r: BERReader<'_, '_>) -> ASN1Result<Enc> {
        r.read_sequence(|r| {
            expect_oid(r.next(), oid::PBES2)?;
            r.next().read_sequence(|r| {
                let (salt, iterations) = r.next().read_sequence(|r| {
                    expect_oid(r.next(), oid::PBKDF2)?;
                    r.next().read_sequence(|r| {
                        let salt = r.next().read_bytes()?;
                        let iterations = r.next().read_u32()?;
                        r.next().read_sequence(|r| {
                            expect_oid(r.next(), oid::HMAC_WITH_SHA256)?;
                            r.next().read_null()
                        })?;
                        Ok((salt, iterations))
                    })
                })?;
                let iv = r.next().read_sequence(|r| {
                    expect_oid(r.next(), oid::AES256_CBC)?;
                    r.next().read_bytes()
                })?;
                Ok(Enc {
                    salt,
                    iterations,
                    iv,
                })
            })
        })
    }

    fn decrypt(p: &Password, e: &Enc, ct: &[u8]) -> Vec<u8> {
        assert_eq!(e.iterations, ITERATIONS);
        assert_eq!(e.salt.len(), SALT_LEN);
        let key = pbkdf2_key(p, &e.salt, e.iterations);
        let iv: [u8; 16] = e.iv.as_slice().try_into().unwrap();
        let mut buf = ct.to_vec();
        let len = cbc::Decryptor::<aes::Aes256>::new(&(*key).into(), &iv.into())
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .expect("padding checks out, so the password was right")
            .len();
        buf.truncate(len);
        buf
    }

    fn read_attrs(r: BERReader<'_, '_>) -> ASN1Result<Attrs> {
        let (mut name, mut id) = (None, None);
        r.read_set_of(|r| {
            r.read_sequence(|r| {
                let attr = r.next().read_oid()?;
                r.next().read_set_of(|r| {
                    if attr == ObjectIdentifier::from_slice(oid::FRIENDLY_NAME) {
                        name = Some(r.read_bmp_string()?);
                    } else {
                        assert_eq!(attr, ObjectIdentifier::from_slice(oid::LOCAL_KEY_ID));
                        id = Some(r.read_bytes()?);
                    }
                    Ok(())
                })
            })
        })?;
        Ok((name.unwrap(), id.unwrap()))
    }

    /// The content of a data `ContentInfo`.
    fn read_data(r: BERReader<'_, '_>) -> ASN1Result<Vec<u8>> {
        r.read_sequence(|r| {
            expect_oid(r.next(), oid::DATA)?;
            r.next().read_tagged(Tag::context(0), |r| r.read_bytes())
        })
    }

    /// The algorithm and ciphertext of an encryptedData `ContentInfo`.
    fn read_encrypted(r: BERReader<'_, '_>) -> ASN1Result<(Enc, Vec<u8>)> {
        r.read_sequence(|r| {
            expect_oid(r.next(), oid::ENCRYPTED_DATA)?;
            r.next().read_tagged(Tag::context(0), |r| {
                r.read_sequence(|r| {
                    assert_eq!(r.next().read_u8()?, 0);
                    r.next().read_sequence(|r| {
                        expect_oid(r.next(), oid::DATA)?;
                        let enc = read_pbes2(r.next())?;
                        let ct = r
                            .next()
                            .read_tagged_implicit(Tag::context(0), |r| r.read_bytes())?;
                        Ok((enc, ct))
                    })
                })
            })
        })
    }

    fn read_cert_bags(der: &[u8]) -> Vec<CertEntry> {
        yasna::parse_der(der, |r| {
            let mut certs = Vec::new();
            r.read_sequence_of(|r| {
                certs.push(r.read_sequence(|r| {
                    expect_oid(r.next(), oid::CERT_BAG)?;
                    let cert = r.next().read_tagged(Tag::context(0), |r| {
                        r.read_sequence(|r| {
                            expect_oid(r.next(), oid::X509_CERTIFICATE)?;
                            r.next().read_tagged(Tag::context(0), |r| r.read_bytes())
                        })
                    })?;
                    let attrs = r.read_optional(read_attrs)?;
                    Ok((cert, attrs))
                })?);
                Ok(())
            })?;
            Ok(certs)
        })
        .unwrap()
    }

    fn read_key_bag(p: &Password, der: &[u8]) -> (Vec<u8>, Attrs) {
        let mut bags = Vec::new();
        yasna::parse_der(der, |r| {
            r.read_sequence_of(|r| {
                bags.push(r.read_sequence(|r| {
                    expect_oid(r.next(), oid::SHROUDED_KEY_BAG)?;
                    let (enc, ct) = r.next().read_tagged(Tag::context(0), |r| {
                        r.read_sequence(|r| Ok((read_pbes2(r.next())?, r.next().read_bytes()?)))
                    })?;
                    Ok((enc, ct, read_attrs(r.next())?))
                })?);
                Ok(())
            })
        })
        .unwrap();
        assert_eq!(bags.len(), 1, "one key bag");
        let (enc, ct, attrs) = bags.pop().unwrap();
        (decrypt(p, &enc, &ct), attrs)
    }

    /// The authenticated safe, if the MAC verifies with `p`.
    fn verify_mac(der: &[u8], p: &Password) -> Option<Vec<u8>> {
        let (auth_safe, (digest, salt, iterations)) = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                assert_eq!(r.next().read_u8()?, 3);
                let auth_safe = read_data(r.next())?;
                let mac = r.next().read_sequence(|r| {
                    let digest = r.next().read_sequence(|r| {
                        r.next().read_sequence(|r| {
                            expect_oid(r.next(), oid::SHA256)?;
                            r.next().read_null()
                        })?;
                        r.next().read_bytes()
                    })?;
                    let salt = r.next().read_bytes()?;
                    Ok((digest, salt, r.next().read_u32()?))
                })?;
                Ok((auth_safe, mac))
            })
        })
        .unwrap();
        assert_eq!(iterations, ITERATIONS);
        assert_eq!(salt.len(), SALT_LEN);
        let key = pkcs12_kdf_sha256(&p.bmp(), &salt, KDF_ID_MAC, iterations);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key[..]);
        hmac::verify(&key, &auth_safe, &digest).ok()?;
        Some(auth_safe)
    }

    fn decode(der: &[u8], p: &Password) -> Decoded {
        let auth_safe = verify_mac(der, p).expect("MAC verifies");
        let ((enc, ct), keys) = yasna::parse_der(&auth_safe, |r| {
            r.read_sequence(|r| Ok((read_encrypted(r.next())?, read_data(r.next())?)))
        })
        .unwrap();
        let certs = read_cert_bags(&decrypt(p, &enc, &ct));
        let (key_pkcs8, key_attrs) = read_key_bag(p, &keys);
        Decoded {
            key_pkcs8,
            key_attrs,
            certs,
        }
    }

    fn bot_pfx(p: &Password) -> (crate::certs::Ca, crate::certs::Issued, Vec<u8>) {
        let ca = crate::certs::Ca::generate("test CA").unwrap();
        let bot = ca
            .issue_bot("corp.example", "invoice-bot", Default::default())
            .unwrap();
        let der = encode(
            &Contents {
                key_pkcs8: &bot.key_der,
                cert_der: &bot.cert_der,
                ca_der: &[ca.cert_der()],
                friendly_name: "botward bot invoice-bot",
            },
            p,
        )
        .unwrap();
        (ca, bot, der)
    }

    #[test]
    fn pfx_holds_the_key_the_certificate_and_the_ca_linked_by_local_key_id() {
        let p = password("correct horse battery staple");
        let (ca, bot, der) = bot_pfx(&p);
        let d = decode(&der, &p);
        assert_eq!(d.key_pkcs8, bot.key_der);
        let id = digest::digest(&digest::SHA256, &bot.cert_der)
            .as_ref()
            .to_vec();
        let attrs = ("botward bot invoice-bot".to_owned(), id);
        assert_eq!(d.key_attrs, attrs);
        assert_eq!(
            d.certs,
            vec![
                (bot.cert_der.clone(), Some(attrs)),
                (ca.cert_der().to_vec(), None)
            ]
        );
    }

    #[test]
    fn pfx_is_encrypted_and_a_wrong_password_fails_the_mac() {
        let p = password("correct horse battery staple");
        let (_, bot, der) = bot_pfx(&p);
        assert!(verify_mac(&der, &password("correct horse battery stapl")).is_none());
        assert!(verify_mac(&der, &p).is_some());
        // Neither the key nor the certificate is in the clear.
        for plain in [&bot.key_der[..], &bot.cert_der[..]] {
            assert!(!der.windows(32).any(|w| plain.windows(32).any(|p| p == w)));
        }
        // Fresh salts and IVs each time.
        assert_ne!(der, bot_pfx(&p).2);
    }
}
