// SHA-256 through OpenSSL's EVP interface, as lower-case hex (what `sha256sum` prints): the
// checksum of a dataset's source files and of its content. Sha256 hashes a stream piece by
// piece, so a large file need not sit in memory twice.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace ft::io {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  Sha256& update(const void* data, size_t bytes);
  Sha256& update(std::string_view bytes) { return update(bytes.data(), bytes.size()); }
  // The digest of everything passed to update(), as 64 hex digits; the hasher is then spent.
  std::string hex_digest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string sha256_hex(std::string_view bytes);

}  // namespace ft::io
