//! The mTLS front door's TLS side: the rustls server configuration (TLS 1.2
//! and 1.3, client certificate mandatory, verified against `client_ca` and
//! the CRLs, expired CRLs refused), and what a verified client certificate
//! says about who is calling.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::settings::TlsSection;
use crate::config::{Diag, Source};
use crate::policy::{Identity, IdentityKind, Policy};

/// The TLS half of a loaded configuration.
pub struct TlsSetup {
    /// For the acceptor.
    pub server: Arc<ServerConfig>,
    /// For re-checking open connections after a reload (revocations).
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Which certificate fields name the caller, in order of precedence.
    pub identity: Vec<IdentityKind>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(src: &Source, dir: &Path, v: &Spanned<String>, diags: &mut Vec<Diag>) -> Option<Vec<u8>> {
    let p = dir.join(v.get_ref());
    std::fs::read(&p)
        .map_err(|e| diags.push(src.at(v, format!("{}: {e}", p.display()))))
        .ok()
}

fn certs(
    src: &Source,
    v: &Spanned<String>,
    bytes: &[u8],
    diags: &mut Vec<Diag>,
) -> Vec<CertificateDer<'static>> {
    let list: Result<Vec<_>, _> = rustls_pemfile::certs(&mut BufReader::new(bytes)).collect();
    match list {
        Ok(l) if !l.is_empty() => l,
        _ => {
            diags.push(src.at(v, format!("{}: expected PEM certificates", v.get_ref())));
            vec![]
        }
    }
}

/// Reads `[tls] identity`: known kinds, none twice, at least one.
fn identity_order(src: &Source, t: &TlsSection, diags: &mut Vec<Diag>) -> Vec<IdentityKind> {
    let Some(list) = &t.identity else {
        return IdentityKind::DEFAULT.to_vec();
    };
    let mut order = Vec::new();
    for k in list.get_ref() {
        match IdentityKind::parse(k.get_ref()) {
            Some(kind) if order.contains(&kind) => {
                diags.push(src.at(k, format!("[tls] identity: {:?} is listed twice", k.get_ref())))
            }
            Some(kind) => order.push(kind),
            None => diags.push(src.at(
                k,
                format!(
                    "[tls] identity: {:?} is not an identity kind; expected \"email\", \"uri\", \"dns\" or \"cn\"",
                    k.get_ref()
                ),
            )),
        }
    }
    if order.is_empty() && list.get_ref().is_empty() {
        diags.push(src.at(
            list,
            "[tls] identity: empty; expected e.g. [\"email\", \"uri\"]",
        ));
    }
    order
}

/// Builds the server side from `[tls]`.
pub fn load(src: &Source, dir: &Path, t: &TlsSection, diags: &mut Vec<Diag>) -> Option<TlsSetup> {
    let before = diags.len();
    let identity = identity_order(src, t, diags);
    let chain = read(src, dir, &t.cert, diags)
        .map(|b| certs(src, &t.cert, &b, diags))
        .unwrap_or_default();
    let key: Option<PrivateKeyDer<'static>> = {
        let p = dir.join(t.key.get_ref());
        match crate::secret::read_private_file(&p, "TLS key") {
            Ok(bytes) => match rustls_pemfile::private_key(&mut BufReader::new(bytes.expose())) {
                Ok(Some(k)) => Some(k),
                _ => {
                    diags.push(src.at(
                        &t.key,
                        format!("{}: expected a PEM private key", p.display()),
                    ));
                    None
                }
            },
            Err(e) => {
                diags.push(src.at(&t.key, e));
                None
            }
        }
    };
    let mut roots = RootCertStore::empty();
    if let Some(b) = read(src, dir, &t.client_ca, diags) {
        for c in certs(src, &t.client_ca, &b, diags) {
            if let Err(e) = roots.add(c) {
                diags.push(src.at(&t.client_ca, format!("{}: {e}", t.client_ca.get_ref())));
            }
        }
    }
    let mut crls = Vec::new();
    for c in &t.crl {
        let Some(bytes) = read(src, dir, c, diags) else {
            continue;
        };
        let parsed: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
            rustls_pemfile::crls(&mut BufReader::new(&bytes[..]))
                .filter_map(Result::ok)
                .collect()
        } else {
            vec![CertificateRevocationListDer::from(bytes)]
        };
        if parsed.is_empty() {
            diags.push(src.at(c, format!("{}: expected a CRL (PEM or DER)", c.get_ref())));
        }
        crls.extend(parsed);
    }
    if diags.len() > before {
        return None;
    }
    let verifier = match WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(crls)
        .enforce_revocation_expiration()
        .build()
    {
        Ok(v) => v,
        Err(e) => {
            diags.push(src.at(&t.client_ca, format!("client verification: {e}")));
            return None;
        }
    };
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| diags.push(src.at(&t.cert, e.to_string())))
        .ok()?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(chain, key?)
        .map_err(|e| diags.push(src.at(&t.key, format!("certificate and key: {e}"))))
        .ok()?;
    let mut cfg = cfg;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(TlsSetup {
        server: Arc::new(cfg),
        verifier,
        identity,
    })
}

/// What a verified client certificate says.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// Identities it carries (SAN email/URI/DNS, subject CN).
    pub identities: Vec<Identity>,
    /// True when it carries the clientAuth extended key usage.
    pub client_auth: bool,
}

/// Reads a (verified) end-entity certificate.
pub fn peer_cert(der: &[u8]) -> Result<PeerCert, String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let mut ids = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            let id = match n {
                GeneralName::RFC822Name(e) => Identity::parse(&format!("email:{e}")),
                GeneralName::URI(u) => Identity::parse(&format!("uri:{u}")),
                GeneralName::DNSName(d) => Identity::parse(&format!("dns:{d}")),
                _ => continue,
            };
            if let Ok(id) = id {
                ids.push(id);
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(Ok(id)) = cn.as_str().map(|s| Identity::parse(&format!("cn:{s}"))) {
            ids.push(id);
        }
    }
    let client_auth = matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth);
    Ok(PeerCert {
        sha256: hex::encode(Sha256::digest(der)),
        identities: ids,
        client_auth,
    })
}

/// Why a verified certificate still gets no user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmapped {
    /// No clientAuth EKU.
    NotForClients,
    /// It carries no identity of a configured kind, or the deciding one
    /// names no policy user.
    NoUser,
    /// It carries two different identities of the deciding kind.
    Ambiguous(Vec<Identity>),
}

impl Unmapped {
    /// Reason code, for the audit trail and the 403 answer.
    pub fn code(&self) -> &'static str {
        match self {
            Unmapped::NotForClients => "certificate_not_for_client_auth",
            Unmapped::NoUser => "no_user_for_certificate",
            Unmapped::Ambiguous(_) => "ambiguous_certificate_identity",
        }
    }

    /// A sentence for the certificate's holder.
    pub fn message(&self) -> &'static str {
        match self {
            Unmapped::NotForClients => {
                "this certificate is not for client authentication (no clientAuth extended key usage)"
            }
            Unmapped::NoUser => {
                "the gateway's policy maps this client certificate to no user; ask its administrator to add your identity"
            }
            Unmapped::Ambiguous(_) => {
                "this certificate carries two different identities of the kind the gateway decides by"
            }
        }
    }
}

/// The identity that names a certificate's holder: of the first kind in
/// `order` that the certificate carries at all, which must be one value.
pub fn deciding_identity<'a>(
    cert: &'a PeerCert,
    order: &[IdentityKind],
) -> Result<&'a Identity, Unmapped> {
    for kind in order {
        let mut of_kind = cert.identities.iter().filter(|i| i.kind() == *kind);
        let Some(first) = of_kind.next() else {
            continue;
        };
        let others: Vec<&Identity> = of_kind.filter(|i| *i != first).collect();
        if !others.is_empty() {
            let mut all = vec![first.clone()];
            all.extend(others.into_iter().cloned());
            return Err(Unmapped::Ambiguous(all));
        }
        return Ok(first);
    }
    Err(Unmapped::NoUser)
}

/// The policy user a certificate maps to: the user whose identity is the
/// certificate's deciding identity (see [`deciding_identity`]). Other
/// identities in the certificate are not looked at, so a certificate with
/// SAN `eve@example.test` and CN `bob` is eve's (or nobody's), never bob's.
pub fn map_user(
    policy: &Policy,
    order: &[IdentityKind],
    cert: &PeerCert,
) -> Result<String, Unmapped> {
    if !cert.client_auth {
        return Err(Unmapped::NotForClients);
    }
    let id = deciding_identity(cert, order)?;
    policy
        .user_for(id)
        .map(str::to_string)
        .ok_or(Unmapped::NoUser)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(ids: &[&str]) -> PeerCert {
        PeerCert {
            sha256: "00".repeat(32),
            identities: ids.iter().map(|s| Identity::parse(s).unwrap()).collect(),
            client_auth: true,
        }
    }

    #[test]
    fn the_first_configured_kind_decides() {
        let default = IdentityKind::DEFAULT;
        let c = cert(&["cn:bob", "email:eve@example.test"]);
        assert_eq!(
            deciding_identity(&c, &default).unwrap().to_string(),
            "email:eve@example.test",
            "the SAN decides, the CN is not looked at"
        );
        let cn_only = cert(&["cn:bob"]);
        assert_eq!(deciding_identity(&cn_only, &default), Err(Unmapped::NoUser));
        let with_cn = [IdentityKind::Cn, IdentityKind::Email];
        assert_eq!(
            deciding_identity(&c, &with_cn).unwrap().to_string(),
            "cn:bob"
        );
        let uri_first = [IdentityKind::Uri, IdentityKind::Email];
        let both = cert(&["email:a@x.test", "uri:spiffe://x/a"]);
        assert_eq!(
            deciding_identity(&both, &uri_first).unwrap().to_string(),
            "uri:spiffe://x/a"
        );
    }

    #[test]
    fn two_values_of_the_deciding_kind_are_ambiguous() {
        let order = [IdentityKind::Cn];
        let c = cert(&["cn:bob", "cn:alice"]);
        assert!(matches!(
            deciding_identity(&c, &order),
            Err(Unmapped::Ambiguous(_))
        ));
        // The same value twice is not ambiguous; another kind does not count.
        let same = cert(&["cn:bob", "cn:bob", "email:x@y.test"]);
        assert_eq!(
            deciding_identity(&same, &order).unwrap().to_string(),
            "cn:bob"
        );
        let emails = cert(&["email:a@x.test", "email:b@x.test"]);
        assert_eq!(
            deciding_identity(&emails, &IdentityKind::DEFAULT)
                .unwrap_err()
                .code(),
            "ambiguous_certificate_identity"
        );
    }
}
