// Errors: every failure a user can cause (a wrong shape, a bad file, a bad key) is thrown as
// ft::Error with a message that names the operation and what was expected. Tools catch it at
// the top, print it and exit non-zero; nothing here aborts the process.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ft {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates anything streamable: str("matmul: got ", 3, " dims").
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace ft

// FT_CHECK(condition, message parts...): throws ft::Error built from the parts when false.
#define FT_CHECK(cond, ...)                              \
  do {                                                   \
    if (!(cond)) throw ::ft::Error(::ft::str(__VA_ARGS__)); \
  } while (0)
