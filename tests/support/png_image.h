// Reads a PNG back with libpng, for the suites that check plots: its size and how many
// distinct colours it holds (a blank or failed drawing has one).
#pragma once

#include <png.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace ft::testing {

struct PngImage {
  bool decoded = false;
  uint32_t width = 0, height = 0;
  std::vector<uint32_t> rgba;  // width * height pixels, row by row

  size_t distinct_colors() const { return std::set<uint32_t>(rgba.begin(), rgba.end()).size(); }
};

inline PngImage read_png(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  PngImage out;
  if (!png_image_begin_read_from_file(&image, path.c_str())) return out;
  image.format = PNG_FORMAT_RGBA;
  out.rgba.resize(static_cast<size_t>(image.width) * image.height);
  out.decoded = png_image_finish_read(&image, nullptr, out.rgba.data(), 0, nullptr) != 0;
  out.width = image.width;
  out.height = image.height;
  return out;
}

}  // namespace ft::testing
