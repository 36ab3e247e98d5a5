#include "tests/support/test_crypto.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <utility>

#include "tests/support/http_client.h"

namespace strata::test_support {
namespace {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using PKeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;

// Fails with the queued OpenSSL error text.
std::unexpected<Error> OpenSslFail(std::string_view what) {
  std::string detail;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!detail.empty()) detail += "; ";
    detail += buffer;
  }
  return Fail(ErrorCode::kInternal, "openssl: {} failed: {}", what, detail.empty() ? "no detail" : detail);
}

BioPtr MemoryBio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

Result<PKeyPtr> ParsePrivateKey(std::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  PKeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return OpenSslFail("PEM_read_bio_PrivateKey");
  return key;
}

Result<X509Ptr> ParseCertificate(std::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return OpenSslFail("PEM_read_bio_X509");
  return cert;
}

Result<PemCertificate> ToPem(X509* cert, EVP_PKEY* key) {
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(cert_bio.get(), cert)) return OpenSslFail("PEM_write_bio_X509");
  if (!PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) {
    return OpenSslFail("PEM_write_bio_PrivateKey");
  }
  return PemCertificate{.cert_pem = BioContents(cert_bio.get()), .key_pem = BioContents(key_bio.get())};
}

struct CertificateSpec {
  std::string common_name;
  // (NID, OpenSSL config value) pairs, e.g. {NID_basic_constraints, "critical,CA:TRUE"}.
  std::vector<std::pair<int, std::string>> extensions;
};

// Builds a certificate for `subject_key`, signed by `issuer_key` under `issuer` (nullptr:
// self-signed).
Result<X509Ptr> MakeCertificate(const CertificateSpec& spec, EVP_PKEY* subject_key, X509* issuer, EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslFail("X509_new");
  X509_set_version(cert.get(), 2);  // v3

  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) return OpenSslFail("RAND_bytes");
  serial_bytes[0] &= 0x7f;  // positive
  BnPtr serial(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  if (!serial || !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()))) {
    return OpenSslFail("serial number");
  }
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7L * 24 * 3600);

  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("strata tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  if (!X509_set_pubkey(cert.get(), subject_key)) return OpenSslFail("X509_set_pubkey");

  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer != nullptr ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : spec.extensions) {
    X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str());
    if (extension == nullptr) return OpenSslFail(fmt::format("extension {}={}", OBJ_nid2sn(nid), value));
    int added = X509_add_ext(cert.get(), extension, -1);
    X509_EXTENSION_free(extension);
    if (!added) return OpenSslFail("X509_add_ext");
  }
  if (!X509_sign(cert.get(), issuer_key, EVP_sha256())) return OpenSslFail("X509_sign");
  return cert;
}

Result<PKeyPtr> GenerateEcKey() {
  PKeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslFail("EVP_EC_gen(P-256)");
  return key;
}

}  // namespace

std::string Base64UrlEncode(std::string_view data) {
  std::string text = Base64Encode(data);
  while (!text.empty() && text.back() == '=') text.pop_back();
  for (char& c : text) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return text;
}

Result<TestCertificateAuthority> TestCertificateAuthority::Create(std::string_view common_name) {
  STRATA_ASSIGN_OR_RETURN(PKeyPtr key, GenerateEcKey());
  CertificateSpec spec{
      .common_name = std::string(common_name),
      .extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                     {NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"},
                     {NID_subject_key_identifier, "hash"}},
  };
  STRATA_ASSIGN_OR_RETURN(X509Ptr cert, MakeCertificate(spec, key.get(), nullptr, key.get()));
  STRATA_ASSIGN_OR_RETURN(PemCertificate pem, ToPem(cert.get(), key.get()));
  return TestCertificateAuthority(std::move(pem));
}

Result<PemCertificate> TestCertificateAuthority::IssueServerCertificate(
    const std::vector<std::string>& dns_names, const std::vector<std::string>& ip_addresses) const {
  STRATA_ASSIGN_OR_RETURN(PKeyPtr ca_key, ParsePrivateKey(ca_.key_pem));
  STRATA_ASSIGN_OR_RETURN(X509Ptr ca_cert, ParseCertificate(ca_.cert_pem));
  STRATA_ASSIGN_OR_RETURN(PKeyPtr key, GenerateEcKey());
  std::string alt_names;
  for (const std::string& dns : dns_names) alt_names += (alt_names.empty() ? "" : ",") + ("DNS:" + dns);
  for (const std::string& ip : ip_addresses) alt_names += (alt_names.empty() ? "" : ",") + ("IP:" + ip);
  if (alt_names.empty()) return Fail(ErrorCode::kInvalidArgument, "server certificate needs a DNS name or IP");
  CertificateSpec spec{
      .common_name = dns_names.empty() ? ip_addresses.front() : dns_names.front(),
      .extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                     {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                     {NID_ext_key_usage, "serverAuth"},
                     {NID_subject_key_identifier, "hash"},
                     {NID_authority_key_identifier, "keyid:always"},
                     {NID_subject_alt_name, alt_names}},
  };
  STRATA_ASSIGN_OR_RETURN(X509Ptr cert, MakeCertificate(spec, key.get(), ca_cert.get(), ca_key.get()));
  return ToPem(cert.get(), key.get());
}

Result<PemCertificate> CreateSelfSignedRsaCertificate(std::string_view common_name, int rsa_bits) {
  PKeyPtr key(EVP_RSA_gen(static_cast<unsigned int>(rsa_bits)));
  if (!key) return OpenSslFail("EVP_RSA_gen");
  CertificateSpec spec{
      .common_name = std::string(common_name),
      .extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                     {NID_key_usage, "critical,digitalSignature,keyCertSign"},
                     {NID_subject_key_identifier, "hash"}},
  };
  STRATA_ASSIGN_OR_RETURN(X509Ptr cert, MakeCertificate(spec, key.get(), nullptr, key.get()));
  return ToPem(cert.get(), key.get());
}

Result<std::string> SignRs256(std::string_view key_pem, std::string_view data) {
  STRATA_ASSIGN_OR_RETURN(PKeyPtr key, ParsePrivateKey(key_pem));
  MdCtxPtr context(EVP_MD_CTX_new());
  if (!context || EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1) {
    return OpenSslFail("EVP_DigestSignInit");
  }
  size_t size = 0;
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  if (EVP_DigestSign(context.get(), nullptr, &size, bytes, data.size()) != 1) return OpenSslFail("EVP_DigestSign");
  std::string signature(size, '\0');
  if (EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &size, bytes, data.size()) != 1) {
    return OpenSslFail("EVP_DigestSign");
  }
  signature.resize(size);
  return signature;
}

Result<std::string> CertificateDer(std::string_view cert_pem) {
  STRATA_ASSIGN_OR_RETURN(X509Ptr cert, ParseCertificate(cert_pem));
  int size = i2d_X509(cert.get(), nullptr);
  if (size <= 0) return OpenSslFail("i2d_X509");
  std::string der(static_cast<size_t>(size), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_X509(cert.get(), &out);
  return der;
}

Result<std::string> LibtrustKeyId(std::string_view cert_pem) {
  STRATA_ASSIGN_OR_RETURN(X509Ptr cert, ParseCertificate(cert_pem));
  EVP_PKEY* public_key = X509_get0_pubkey(cert.get());
  if (public_key == nullptr) return OpenSslFail("X509_get0_pubkey");
  int size = i2d_PUBKEY(public_key, nullptr);
  if (size <= 0) return OpenSslFail("i2d_PUBKEY");
  std::string der(static_cast<size_t>(size), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_PUBKEY(public_key, &out);
  unsigned char hash[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(der.data()), der.size(), hash);

  // 30 bytes = 240 bits = 48 base32 characters, no padding needed.
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string base32;
  uint32_t buffer = 0;
  int bits = 0;
  for (int i = 0; i < 30; ++i) {
    buffer = (buffer << 8) | hash[i];
    bits += 8;
    while (bits >= 5) {
      base32 += kAlphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  std::string key_id;
  for (size_t i = 0; i < base32.size(); i += 4) {
    if (!key_id.empty()) key_id += ':';
    key_id += base32.substr(i, 4);
  }
  return key_id;
}

}  // namespace strata::test_support
