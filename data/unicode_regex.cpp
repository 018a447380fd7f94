#include "data/unicode_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "framework/error.h"

namespace ft::data {

namespace {

std::string pcre2_message(int error) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(error, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

struct UnicodeRegex::Compiled {
  ~Compiled() { pcre2_code_free(code); }  // accepts nullptr
  pcre2_code* code = nullptr;
  bool jit = false;
  uint32_t groups = 0;
};

UnicodeRegex::UnicodeRegex(const std::string& pattern, Mode mode, std::string owner)
    : compiled_(std::make_unique<Compiled>()), mode_(mode), owner_(std::move(owner)) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | (mode == Mode::tile ? PCRE2_ANCHORED : 0);
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error,
                                  &error_offset, nullptr);
  FT_CHECK(compiled_->code, owner_, ": PCRE2 cannot compile the pre-tokenisation pattern: ", pcre2_message(error),
           " at offset ", error_offset);
  compiled_->jit = pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE) == 0;
  pcre2_pattern_info(compiled_->code, PCRE2_INFO_CAPTURECOUNT, &compiled_->groups);
}

UnicodeRegex::~UnicodeRegex() = default;

void UnicodeRegex::for_each_match(std::string_view text, const std::function<void(const Match&)>& visit) const {
  if (text.empty()) return;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create(compiled_->groups + 1, nullptr), &pcre2_match_data_free);
  FT_CHECK(data, owner_, ": out of memory for PCRE2 match data");
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
  for (size_t start = 0; start < text.size();) {
    const int rc =
        compiled_->jit
            ? pcre2_jit_match(compiled_->code, subject, text.size(), start, 0, data.get(), nullptr)
            : pcre2_match(compiled_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH && mode_ == Mode::search) return;
    FT_CHECK(rc > 0, owner_, ": pre-tokenisation failed at byte offset ", start, ": ", pcre2_message(rc));
    FT_CHECK(ovector[1] > ovector[0], owner_, ": pre-tokenisation matched nothing at byte offset ", start);
    Match match{ovector[0], ovector[1], 0};
    for (int group = 1; group < rc; ++group) {
      if (ovector[2 * group] != PCRE2_UNSET) {
        match.group = group;
        break;
      }
    }
    visit(match);
    start = match.end;
  }
}

}  // namespace ft::data
