#include "framework/io/sha256.h"

#include <openssl/evp.h>

#include "framework/error.h"

namespace ft::io {

struct Sha256::State {
  EVP_MD_CTX* context = nullptr;
  bool finished = false;
  ~State() { EVP_MD_CTX_free(context); }
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->context = EVP_MD_CTX_new();
  FT_CHECK(state_->context != nullptr && EVP_DigestInit_ex(state_->context, EVP_sha256(), nullptr) == 1,
           "sha256: OpenSSL could not start a digest");
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

Sha256& Sha256::update(const void* data, size_t bytes) {
  FT_CHECK(!state_->finished, "sha256: update() after hex_digest()");
  FT_CHECK(EVP_DigestUpdate(state_->context, data, bytes) == 1, "sha256: OpenSSL digest update failed");
  return *this;
}

std::string Sha256::hex_digest() {
  FT_CHECK(!state_->finished, "sha256: hex_digest() called twice");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  FT_CHECK(EVP_DigestFinal_ex(state_->context, digest, &length) == 1, "sha256: OpenSSL digest final failed");
  state_->finished = true;
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

std::string sha256_hex(std::string_view bytes) { return Sha256().update(bytes).hex_digest(); }

}  // namespace ft::io
