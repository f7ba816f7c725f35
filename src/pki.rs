//! Development PKI (`ipmigw pki init|revoke`, and the demo): a CA, a server
//! certificate and client certificates, made with rcgen.
//!
//! DEVELOPMENT ONLY: the CA key sits beside the certificates it signs, with
//! no passphrase. Production deployments use their own CA.
//!
//! Layout of DIR: `ca.crt`, `ca.key`, `ca.crl`, `revoked.json`,
//! `server.crt`, `server.key`, and `NAME.crt`/`NAME.key` per user. Keys are
//! written with mode 0600.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Subject of the development CA; it says what it is.
pub const CA_NAME: &str = "ipmigw development CA (NOT FOR PRODUCTION)";

/// What a client certificate should look like (tests make bad ones too).
#[derive(Debug, Clone)]
pub struct ClientCertSpec {
    /// CN and file name.
    pub name: String,
    /// SAN email; `NAME@example.test` by default.
    pub email: Option<String>,
    /// More SAN e-mail addresses (tests make ambiguous certificates).
    pub extra_emails: Vec<String>,
    /// Subject CN, when it should differ from `name`.
    pub common_name: Option<String>,
    /// Validity end, relative to now (negative: already expired).
    pub valid_for: Duration,
    /// Extended key usage: clientAuth normally; serverAuth only to make a
    /// certificate the gateway must refuse.
    pub server_auth_only: bool,
}

impl ClientCertSpec {
    /// A normal client certificate for `name`, valid for a year.
    pub fn new(name: &str) -> ClientCertSpec {
        ClientCertSpec {
            name: name.to_string(),
            email: Some(format!("{name}@example.test")),
            extra_emails: Vec::new(),
            common_name: None,
            valid_for: Duration::days(365),
            server_auth_only: false,
        }
    }
}

fn err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Replaces `path` with `content`; `private` files get mode 0600, others
/// 0644. Created fresh (never through an existing file or link).
pub(crate) fn write_file(path: &Path, content: &str, private: bool) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| err(path, e))?;
    f.write_all(content.as_bytes()).map_err(|e| err(path, e))
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b[0] &= 0x7F; // positive
    b[0] |= 0x01; // and 16 bytes long
    SerialNumber::from_slice(&b)
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "ipmigw demo");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.key_identifier_method = KeyIdMethod::Sha256;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(3650);
    p
}

/// The CA, loaded or made.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn load_or_make_ca(dir: &Path) -> Result<Ca, String> {
    let key_path = dir.join("ca.key");
    if key_path.exists() {
        let pem = std::fs::read_to_string(&key_path).map_err(|e| err(&key_path, e))?;
        let key = KeyPair::from_pem(&pem).map_err(|e| err(&key_path, e))?;
        // Re-signing the same subject with the same key gives an issuer that
        // verifies the existing certificates and CRLs.
        let cert = ca_params()
            .self_signed(&key)
            .map_err(|e| err(&key_path, e))?;
        return Ok(Ca { cert, key });
    }
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = ca_params().self_signed(&key).map_err(|e| e.to_string())?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&dir.join("ca.crt"), &cert.pem(), false)?;
    Ok(Ca { cert, key })
}

/// Makes (or extends) a development PKI: the CA if missing, a server
/// certificate for `names`/`ips`, and a client certificate per user.
/// Returns the files written.
pub fn init(
    dir: &Path,
    users: &[String],
    names: &[String],
    ips: &[IpAddr],
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let ca = load_or_make_ca(dir)?;
    let mut written = vec![dir.join("ca.crt"), dir.join("ca.key")];
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ipmigw gateway (development)");
    p.distinguished_name = dn;
    for n in names {
        p.subject_alt_names.push(SanType::DnsName(
            n.clone()
                .try_into()
                .map_err(|_| format!("server name {n:?} is not a DNS name"))?,
        ));
    }
    for ip in ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(random_serial());
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = p
        .signed_by(&key, &ca.cert, &ca.key)
        .map_err(|e| e.to_string())?;
    write_file(&dir.join("server.key"), &key.serialize_pem(), true)?;
    write_file(&dir.join("server.crt"), &cert.pem(), false)?;
    written.extend([dir.join("server.crt"), dir.join("server.key")]);
    for u in users {
        written.extend(issue_client(dir, &ClientCertSpec::new(u))?);
    }
    if !dir.join("ca.crl").exists() {
        write_crl(dir, &ca, &[])?;
    }
    written.push(dir.join("ca.crl"));
    Ok(written)
}

/// Issues one client certificate with the CA in `dir`.
pub fn issue_client(dir: &Path, spec: &ClientCertSpec) -> Result<Vec<PathBuf>, String> {
    let name = &spec.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        return Err(format!(
            "user name {name:?}: expected letters, digits, '-', '_' or '.'"
        ));
    }
    let ca = load_or_make_ca(dir)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        spec.common_name.as_deref().unwrap_or(name.as_str()),
    );
    p.distinguished_name = dn;
    for email in spec.email.iter().chain(&spec.extra_emails) {
        p.subject_alt_names.push(SanType::Rfc822Name(
            email
                .clone()
                .try_into()
                .map_err(|_| format!("email {email:?} is not ASCII"))?,
        ));
    }
    p.extended_key_usages = vec![if spec.server_auth_only {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(random_serial());
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(2).max(-spec.valid_for + Duration::days(1));
    p.not_after = now + spec.valid_for;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = p
        .signed_by(&key, &ca.cert, &ca.key)
        .map_err(|e| e.to_string())?;
    let (crt, keyf) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    write_file(&keyf, &key.serialize_pem(), true)?;
    write_file(&crt, &cert.pem(), false)?;
    Ok(vec![crt, keyf])
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Revoked {
    crl_number: u64,
    serials: Vec<(String, String)>,
}

fn write_crl(dir: &Path, ca: &Ca, serials: &[(String, String)]) -> Result<(), String> {
    write_crl_until(
        dir,
        ca,
        serials,
        OffsetDateTime::now_utc() + Duration::days(30),
    )
}

/// Re-issues `DIR/ca.crl` with the same revocations, valid until
/// `next_update` (a time in the past makes an expired CRL, which the
/// gateway must refuse to work with).
pub fn renew_crl(dir: &Path, next_update: OffsetDateTime) -> Result<(), String> {
    let ca = load_or_make_ca(dir)?;
    write_crl_until(dir, &ca, &[], next_update)
}

fn write_crl_until(
    dir: &Path,
    ca: &Ca,
    serials: &[(String, String)],
    next_update: OffsetDateTime,
) -> Result<(), String> {
    let state_path = dir.join("revoked.json");
    let mut state: Revoked = std::fs::read_to_string(&state_path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    state.crl_number += 1;
    for s in serials {
        if !state.serials.iter().any(|(x, _)| *x == s.0) {
            state.serials.push(s.clone());
        }
    }
    let now = OffsetDateTime::now_utc();
    let revoked = state
        .serials
        .iter()
        .filter_map(|(serial, _)| hex::decode(serial).ok())
        .map(|b| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&b),
            revocation_time: now,
            reason_code: None,
            invalidity_date: None,
        })
        .collect();
    let crl = CertificateRevocationListParams {
        this_update: (now - Duration::minutes(1)).min(next_update - Duration::days(1)),
        next_update,
        crl_number: SerialNumber::from(state.crl_number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)
    .map_err(|e| e.to_string())?;
    write_file(
        &dir.join("ca.crl"),
        &crl.pem().map_err(|e| e.to_string())?,
        false,
    )?;
    write_file(
        &state_path,
        &serde_json::to_string_pretty(&state).unwrap_or_default(),
        false,
    )
}

/// Serial number (hex) of a PEM certificate file.
pub fn serial_of(path: &Path) -> Result<String, String> {
    let pem = std::fs::read(path).map_err(|e| err(path, e))?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| err(path, e))?;
    let cert = p.parse_x509().map_err(|e| err(path, e))?;
    Ok(hex::encode(cert.raw_serial()))
}

/// Adds user `name`'s certificate to `DIR/ca.crl`.
pub fn revoke(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let serial = serial_of(&dir.join(format!("{name}.crt")))?;
    let ca = load_or_make_ca(dir)?;
    write_crl(dir, &ca, &[(serial, name.to_string())])?;
    Ok(dir.join("ca.crl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_issues_keys_0600_and_revoke_lists_the_serial() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let files = init(
            d.path(),
            &["alice".into(), "bob".into()],
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap()],
        )
        .unwrap();
        for f in &files {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            let want = if f.extension().is_some_and(|e| e == "key") {
                0o600
            } else {
                0o644
            };
            assert_eq!(mode, want, "{}", f.display());
        }
        let ca_before = std::fs::read(d.path().join("ca.crt")).unwrap();
        revoke(d.path(), "bob").unwrap();
        assert_eq!(
            std::fs::read(d.path().join("ca.crt")).unwrap(),
            ca_before,
            "revoke keeps the CA"
        );
        let crl = std::fs::read(d.path().join("ca.crl")).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&crl).unwrap();
        use x509_parser::prelude::FromDer;
        let (_, parsed) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&pem.contents)
                .unwrap();
        let serials: Vec<String> = parsed
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(serials, [serial_of(&d.path().join("bob.crt")).unwrap()]);
        assert!(issue_client(d.path(), &ClientCertSpec::new("../x")).is_err());
    }
}
