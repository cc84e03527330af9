//! TLS for `wss://`, on rustls with the ring provider.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

fn provider() -> Arc<CryptoProvider> {
  Arc::new(rustls::crypto::ring::default_provider())
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
    builder.with_root_certificates(trusted_roots(ca)?).with_no_client_auth()
  } else {
    let verifier = Arc::new(AcceptAnyCertificate { provider: provider() });
    builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
  };
  Ok(Arc::new(config))
}

fn trusted_roots(ca: &[String]) -> Result<RootCertStore, String> {
  let mut roots = RootCertStore::empty();
  // Unreadable system certificates are skipped, as Node skips them.
  let system = rustls_native_certs::load_native_certs();
  roots.add_parsable_certificates(system.certs);
  if let Some(path) = std::env::var_os("NODE_EXTRA_CA_CERTS") {
    let pem =
      std::fs::read(&path).map_err(|error| format!("NODE_EXTRA_CA_CERTS ({path:?}): {error}"))?;
    add_pem(&mut roots, &pem)?;
  }
  for pem in ca {
    add_pem(&mut roots, pem.as_bytes())?;
  }
  Ok(roots)
}

fn add_pem(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), String> {
  for certificate in CertificateDer::pem_slice_iter(pem) {
    let certificate = certificate.map_err(|error| format!("tls.ca: {error}"))?;
    roots.add(certificate).map_err(|error| format!("tls.ca: {error}"))?;
  }
  Ok(())
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
