//! TLS for `wss://`, on rustls with the aws-lc-rs provider (README, design
//! notes, "TLS").

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
  CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
  SignatureScheme,
};

fn provider() -> Arc<CryptoProvider> {
  Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client TLS settings of a Socket: the system's roots, the file named
/// by `NODE_EXTRA_CA_CERTS` (as Node trusts it), and `ca` (PEM strings);
/// or, with `reject_unauthorized` false, any certificate at all.
pub fn client_config(
  ca: &[String],
  reject_unauthorized: bool,
) -> Result<Arc<ClientConfig>, String> {
  let builder = ClientConfig::builder_with_provider(provider())
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?;
  let config = if reject_unauthorized {
    let extra = extra_certificates(ca)?;
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped, as Node skips them.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for certificate in &extra {
      roots.add(certificate.clone()).map_err(|error| format!("tls.ca: {error}"))?;
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
      .build()
      .map_err(|error| error.to_string())?;
    let verifier = Arc::new(RootsOrPinned { webpki, pinned: extra });
    builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
  } else {
    let verifier = Arc::new(AcceptAnyCertificate { provider: provider() });
    builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
  };
  Ok(Arc::new(config))
}

/// The certificates trusted beyond the system's: the file named by
/// `NODE_EXTRA_CA_CERTS`, then `tls.ca`.
fn extra_certificates(ca: &[String]) -> Result<Vec<CertificateDer<'static>>, String> {
  let mut pems = Vec::new();
  if let Some(path) = std::env::var_os("NODE_EXTRA_CA_CERTS") {
    let pem =
      std::fs::read(&path).map_err(|error| format!("NODE_EXTRA_CA_CERTS ({path:?}): {error}"))?;
    pems.push(pem);
  }
  pems.extend(ca.iter().map(|pem| pem.as_bytes().to_vec()));
  let mut certificates = Vec::new();
  for pem in pems {
    for certificate in CertificateDer::pem_slice_iter(&pem) {
      certificates.push(certificate.map_err(|error| format!("tls.ca: {error}"))?);
    }
  }
  Ok(certificates)
}

/// The usual chain check, plus: a server presenting exactly a certificate
/// we were told to trust is accepted even though that certificate is a CA
/// (what `openssl req -x509` makes for self-signed servers), as Node
/// accepts it. Its dates were checked before webpki found it to be a CA;
/// its name is checked here.
#[derive(Debug)]
struct RootsOrPinned {
  webpki: Arc<WebPkiServerVerifier>,
  pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for RootsOrPinned {
  fn verify_server_cert(
    &self,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp_response: &[u8],
    now: UnixTime,
  ) -> Result<ServerCertVerified, rustls::Error> {
    let verdict =
      self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
    match verdict {
      Err(error) if is_ca_used_as_end_entity(&error) && self.pinned.contains(end_entity) => {
        verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        Ok(ServerCertVerified::assertion())
      }
      verdict => verdict,
    }
  }

  fn verify_tls12_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    self.webpki.verify_tls12_signature(message, cert, dss)
  }

  fn verify_tls13_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    self.webpki.verify_tls13_signature(message, cert, dss)
  }

  fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    self.webpki.supported_verify_schemes()
  }
}

fn is_ca_used_as_end_entity(error: &rustls::Error) -> bool {
  match error {
    rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
      matches!(other.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
    }
    _ => false,
  }
}

/// `tls: { rejectUnauthorized: false }`: the certificate is not checked
/// (self-signed servers in development), the handshake signatures still are.
#[derive(Debug)]
struct AcceptAnyCertificate {
  provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
  fn verify_server_cert(
    &self,
    _end_entity: &CertificateDer<'_>,
    _intermediates: &[CertificateDer<'_>],
    _server_name: &ServerName<'_>,
    _ocsp_response: &[u8],
    _now: UnixTime,
  ) -> Result<ServerCertVerified, rustls::Error> {
    Ok(ServerCertVerified::assertion())
  }

  fn verify_tls12_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
  }

  fn verify_tls13_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
  }

  fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    self.provider.signature_verification_algorithms.supported_schemes()
  }
}

/// The server TLS settings for `tls: { cert, key }` (PEM): the certificate
/// chain and its private key.
pub fn server_acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
  let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
    .collect::<Result<Vec<_>, _>>()
    .map_err(|error| format!("tls.cert: {error}"))?;
  if chain.is_empty() {
    return Err("tls.cert holds no PEM certificate".to_owned());
  }
  let key =
    PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|error| format!("tls.key: {error}"))?;
  let mut config = ServerConfig::builder_with_provider(provider())
    .with_safe_default_protocol_versions()
    .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
    .map_err(|error| format!("tls: {error}"))?;
  // One stateless session ticket per handshake (rustls's default is two,
  // kept in a cache of 256 sessions): any number of clients can resume,
  // which skips the certificate's signature, the most a full handshake
  // costs, when a network blip makes every client reconnect at once. A
  // resumed handshake hands out the next ticket. The keys live in this
  // process and rotate every 6 hours.
  config.ticketer =
    rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|error| format!("tls: {error}"))?;
  config.send_tls13_tickets = 1;
  Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
