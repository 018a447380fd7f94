// A small C++ face on HDF5's C API for checkpoints and prepared datasets: typed datasets
// addressed by "group/sub/name" paths, and string/integer/float attributes on any object.
// Datasets are contiguous, uncompressed and written without timestamps, so the same content
// gives a byte-identical file (prepare's reruns and checkpoint tests rely on it). HDF5's own
// error printing is switched off; every failure is an ft::Error naming the file and the object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ft::io {

class Hdf5File {
 public:
  static Hdf5File create(const std::string& path);  // creates or truncates
  static Hdf5File open(const std::string& path);    // read-only

  Hdf5File(Hdf5File&& other) noexcept;
  Hdf5File& operator=(Hdf5File&& other) noexcept;
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;
  ~Hdf5File();

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const;                            // any object: "group/sub/dataset"
  std::vector<std::string> children(const std::string& group) const;  // sorted; "/" is the root
  std::vector<int64_t> shape(const std::string& dataset) const;

  // T: float, double, int32_t, int64_t, uint8_t, uint16_t (raw fp16/bf16 bits), uint32_t, uint64_t.
  // Groups on the way are created as needed; read checks that the stored type is exactly T.
  template <class T>
  void write(const std::string& dataset, const T* data, const std::vector<int64_t>& shape);
  template <class T>
  void write(const std::string& dataset, const std::vector<T>& data) {
    write(dataset, data.data(), {static_cast<int64_t>(data.size())});
  }
  template <class T>
  std::vector<T> read(const std::string& dataset) const;
  template <class T>
  void read_into(const std::string& dataset, T* out, size_t count) const;  // count must equal the size

  // Attributes on any object ("/" is the file itself); setting one again replaces it.
  void set_attribute(const std::string& object, const std::string& key, const std::string& value);
  void set_attribute(const std::string& object, const std::string& key, const char* value) {
    set_attribute(object, key, std::string(value));
  }
  void set_attribute(const std::string& object, const std::string& key, int64_t value);
  void set_attribute(const std::string& object, const std::string& key, double value);
  std::string string_attribute(const std::string& object, const std::string& key) const;
  int64_t int_attribute(const std::string& object, const std::string& key) const;
  double double_attribute(const std::string& object, const std::string& key) const;
  bool has_attribute(const std::string& object, const std::string& key) const;

  void flush();

 private:
  Hdf5File(int64_t id, std::string path) : id_(id), path_(std::move(path)) {}
  void ensure_groups(const std::string& dataset);
  int64_t id_ = -1;  // hid_t
  std::string path_;
};

}  // namespace ft::io
