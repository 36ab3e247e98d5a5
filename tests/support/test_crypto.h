// Keys and certificates generated in-process (OpenSSL) for test servers: a CA with server
// certificates for TLS fixtures, and a self-signed RSA certificate that signs JWTs.
// Everything is PEM text; nothing touches the system trust store.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace strata::test_support {

struct PemCertificate {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8 private key
};

// A throwaway certificate authority (EC P-256, valid from an hour ago for a week).
class TestCertificateAuthority {
 public:
  static Result<TestCertificateAuthority> Create(std::string_view common_name = "strata test CA");

  const std::string& cert_pem() const { return ca_.cert_pem; }

  // A server certificate for these DNS names and IP addresses (subjectAltName), with
  // extendedKeyUsage serverAuth, signed by this CA.
  Result<PemCertificate> IssueServerCertificate(const std::vector<std::string>& dns_names,
                                                const std::vector<std::string>& ip_addresses) const;

 private:
  explicit TestCertificateAuthority(PemCertificate ca) : ca_(std::move(ca)) {}
  PemCertificate ca_;
};

// A self-signed RSA certificate (CA:TRUE, digitalSignature + keyCertSign): used as the
// token signer, whose certificate is also the registry's trust root.
Result<PemCertificate> CreateSelfSignedRsaCertificate(std::string_view common_name, int rsa_bits = 2048);

// RSASSA-PKCS1-v1_5 SHA-256 signature of `data` (the JWS "RS256" algorithm).
Result<std::string> SignRs256(std::string_view key_pem, std::string_view data);

// DER encoding of the certificate in `cert_pem` (for the JWS "x5c" header, base64-encoded).
Result<std::string> CertificateDer(std::string_view cert_pem);

// The libtrust key id of the certificate's public key, as distribution expects in a JWS
// "kid": SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without padding,
// in 12 colon-separated groups of 4 ("ABCD:EFGH:...").
Result<std::string> LibtrustKeyId(std::string_view cert_pem);

// base64url without padding (JWS encoding).
std::string Base64UrlEncode(std::string_view data);

}  // namespace strata::test_support
