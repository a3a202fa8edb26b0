//! The rustls side of `tls_server_config`: a `ServerConfig` per version of the
//! web configuration file, with the client certificate policies of Go's
//! `crypto/tls` that exporter-toolkit exposes.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    self, CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

/// `client_auth_type`, named as Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    pub(crate) const NAMES: &'static str = "NoClientCert, RequestClientCert, RequireAnyClientCert, \
                                     VerifyClientCertIfGiven, RequireAndVerifyClientCert";

    pub(crate) fn parse(value: &str) -> Option<ClientAuth> {
        Some(match value {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // "RequireClientCert" is exporter-toolkit's older spelling.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn requires_certificate(self) -> bool {
        matches!(
            self,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    }

    fn verifies_certificate(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// `min_version` / `max_version`. TLS 1.0 and 1.1 are refused when parsing:
/// rustls does not implement them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// Everything a `ServerConfig` is built from, already read and decoded.
pub(crate) struct TlsMaterial {
    pub(crate) cert_chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) client_cas: Vec<CertificateDer<'static>>,
    pub(crate) min_version: TlsVersion,
    pub(crate) max_version: TlsVersion,
    pub(crate) client_allowed_sans: Vec<String>,
    pub(crate) http2: bool,
}

/// The provider reqwest already links, named explicitly so that no
/// process-wide default has to be installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Builds the rustls configuration; errors are phrased for the key they concern.
pub(crate) fn server_config(material: TlsMaterial) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let versions: Vec<&'static SupportedProtocolVersion> = [TlsVersion::Tls12, TlsVersion::Tls13]
        .into_iter()
        .filter(|v| (material.min_version..=material.max_version).contains(v))
        .map(TlsVersion::rustls)
        .collect();
    let verifier = client_verifier(&material, &provider)?;
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("min_version/max_version: {e}"))?;
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.cert_chain, material.key)
        .map_err(|e| format!("cert and key do not make a usable pair: {e}"))?;
    config.alpn_protocols = if material.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

fn client_verifier(
    material: &TlsMaterial,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let auth = material.client_auth;
    let has_cas = !material.client_cas.is_empty();
    if has_cas && auth == ClientAuth::NoClientCert {
        return Err(
            "client_ca_file is set but client_auth_type is NoClientCert; set client_auth_type, \
             e.g. RequireAndVerifyClientCert"
                .into(),
        );
    }
    // A name in a certificate means something only once a CA vouched for it:
    // with RequireAnyClientCert anyone can make a self-signed one carrying an
    // allowed name, and with VerifyClientCertIfGiven no certificate passes too.
    if !material.client_allowed_sans.is_empty() && auth != ClientAuth::RequireAndVerifyClientCert {
        return Err(format!(
            "client_allowed_sans requires client_auth_type RequireAndVerifyClientCert (with \
             client_ca_file), not {auth}: the names of a certificate no CA verified prove nothing"
        ));
    }
    let verifier: Arc<dyn ClientCertVerifier> = match auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: auth.requires_certificate(),
                algorithms: provider.signature_verification_algorithms,
            })
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            if !has_cas {
                // Go would fall back to the system roots; trusting every public CA
                // for client authentication is never what is meant here.
                return Err(format!(
                    "client_auth_type {auth} needs client_ca_file (or client_ca) to verify client certificates"
                ));
            }
            debug_assert!(auth.verifies_certificate());
            let mut roots = RootCertStore::empty();
            for ca in &material.client_cas {
                roots
                    .add(ca.clone())
                    .map_err(|e| format!("client_ca_file: unusable CA certificate: {e}"))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if auth.requires_certificate() {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            builder
                .build()
                .map_err(|e| format!("client_ca_file: {e}"))?
        }
    };
    if material.client_allowed_sans.is_empty() {
        Ok(verifier)
    } else {
        Ok(Arc::new(AllowedSans {
            inner: verifier,
            allowed: material.client_allowed_sans.clone(),
        }))
    }
}

/// RequestClientCert and RequireAnyClientCert: a certificate is asked for
/// (and for the latter required), proves possession of its key, but is not
/// checked against any CA, as in Go.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: after the policy's own checks, the client
/// certificate must carry one of these subject alternative names exactly
/// (DNS name, IP address or URI; e-mail names are not matched).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl AllowedSans {
    fn matches(&self, end_entity: &CertificateDer<'_>) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
            return false;
        };
        self.allowed.iter().any(|san| match san.parse::<IpAddr>() {
            Ok(ip) => cert
                .verify_is_valid_for_subject_name(&ServerName::IpAddress(ip.into()))
                .is_ok(),
            Err(_) => {
                cert.valid_dns_names().any(|name| name == san)
                    || cert.valid_uri_names().any(|uri| uri == san)
            }
        })
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.matches(end_entity) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
