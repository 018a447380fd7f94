// The message of the ft::Error that a call throws, so a test can check several parts of it; the
// test fails when nothing (or something else) is thrown.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "framework/error.h"

namespace ft::testing {

template <class Call>
std::string error_message(Call&& call) {
  try {
    call();
  } catch (const ft::Error& e) {
    return e.what();
  }
  FAIL("expected an ft::Error");
  return "";
}

}  // namespace ft::testing
