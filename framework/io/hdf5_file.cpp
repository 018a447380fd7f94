#include "framework/io/hdf5_file.h"

#include <hdf5.h>

#include <filesystem>
#include <utility>

#include "framework/error.h"

namespace ft::io {
namespace {

// An HDF5 identifier closed by the function that matches its kind.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, -1)), close_(other.close_) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// HDF5 prints a stack of errors to stderr by default; flashtrain reports its own.
void silence_hdf5() {
  static const bool silenced = [] { return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0; }();
  (void)silenced;
}

template <class T>
hid_t native_type();
template <>
hid_t native_type<float>() {
  return H5T_NATIVE_FLOAT;
}
template <>
hid_t native_type<double>() {
  return H5T_NATIVE_DOUBLE;
}
template <>
hid_t native_type<int32_t>() {
  return H5T_NATIVE_INT32;
}
template <>
hid_t native_type<int64_t>() {
  return H5T_NATIVE_INT64;
}
template <>
hid_t native_type<uint8_t>() {
  return H5T_NATIVE_UINT8;
}
template <>
hid_t native_type<uint16_t>() {
  return H5T_NATIVE_UINT16;
}
template <>
hid_t native_type<uint32_t>() {
  return H5T_NATIVE_UINT32;
}
template <>
hid_t native_type<uint64_t>() {
  return H5T_NATIVE_UINT64;
}

// Creation properties without modification times: they are what would make two writes of the
// same content differ.
Handle untimed(hid_t property_class) {
  Handle p(H5Pcreate(property_class), H5Pclose);
  H5Pset_obj_track_times(p.get(), false);
  return p;
}

std::string describe_type(hid_t type) {
  const size_t bytes = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      return str("float", 8 * bytes);
    case H5T_INTEGER:
      return str(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", 8 * bytes);
    case H5T_STRING:
      return "string";
    default:
      return "another type";
  }
}

}  // namespace

Hdf5File Hdf5File::create(const std::string& path) {
  silence_hdf5();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  FT_CHECK(id >= 0, path, ": cannot create the HDF5 file (is the directory there and writable?)");
  return Hdf5File(id, path);
}

Hdf5File Hdf5File::open(const std::string& path) {
  silence_hdf5();
  FT_CHECK(std::filesystem::is_regular_file(path), path, ": no such file");
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  FT_CHECK(id >= 0, path, ": not an HDF5 file (or truncated or corrupt)");
  return Hdf5File(id, path);
}

Hdf5File::Hdf5File(Hdf5File&& other) noexcept : id_(std::exchange(other.id_, -1)), path_(std::move(other.path_)) {}

Hdf5File& Hdf5File::operator=(Hdf5File&& other) noexcept {
  if (this != &other) {
    if (id_ >= 0) H5Fclose(id_);
    id_ = std::exchange(other.id_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

Hdf5File::~Hdf5File() {
  if (id_ >= 0) H5Fclose(id_);
}

bool Hdf5File::has(const std::string& name) const {
  if (name == "/" || name.empty()) return true;
  // H5Lexists needs every group on the way to exist, so walk the path.
  size_t slash = 0;
  while ((slash = name.find('/', slash + 1)) != std::string::npos)
    if (H5Lexists(id_, name.substr(0, slash).c_str(), H5P_DEFAULT) <= 0) return false;
  return H5Lexists(id_, name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> Hdf5File::children(const std::string& group) const {
  FT_CHECK(has(group), path_, ": no group '", group, "'");
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  herr_t status =
      H5Literate_by_name(id_, group.c_str(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names, H5P_DEFAULT);
  FT_CHECK(status >= 0, path_, ": cannot list '", group, "' (corrupt file?)");
  return names;
}

std::vector<int64_t> Hdf5File::shape(const std::string& dataset) const {
  FT_CHECK(has(dataset), path_, ": no dataset '", dataset, "'");
  Handle d(H5Dopen2(id_, dataset.c_str(), H5P_DEFAULT), H5Dclose);
  FT_CHECK(d.valid(), path_, ": '", dataset, "' is not a readable dataset");
  Handle space(H5Dget_space(d.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  FT_CHECK(rank >= 0, path_, ": '", dataset, "': unreadable shape (corrupt file?)");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

void Hdf5File::ensure_groups(const std::string& dataset) {
  Handle gcpl = untimed(H5P_GROUP_CREATE);
  size_t slash = 0;
  while ((slash = dataset.find('/', slash + 1)) != std::string::npos) {
    const std::string group = dataset.substr(0, slash);
    if (H5Lexists(id_, group.c_str(), H5P_DEFAULT) > 0) continue;
    Handle g(H5Gcreate2(id_, group.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
    FT_CHECK(g.valid(), path_, ": cannot create group '", group, "'");
  }
}

template <class T>
void Hdf5File::write(const std::string& dataset, const T* data, const std::vector<int64_t>& shape) {
  ensure_groups(dataset);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(
      dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
      H5Sclose);
  Handle dcpl = untimed(H5P_DATASET_CREATE);
  Handle d(H5Dcreate2(id_, dataset.c_str(), native_type<T>(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
           H5Dclose);
  FT_CHECK(d.valid(), path_, ": cannot create dataset '", dataset, "' (does it exist already?)");
  FT_CHECK(H5Dwrite(d.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, path_, ": writing dataset '",
           dataset, "' failed (disk full?)");
}

template <class T>
void Hdf5File::read_into(const std::string& dataset, T* out, size_t count) const {
  FT_CHECK(has(dataset), path_, ": no dataset '", dataset, "'");
  Handle d(H5Dopen2(id_, dataset.c_str(), H5P_DEFAULT), H5Dclose);
  FT_CHECK(d.valid(), path_, ": '", dataset, "' is not a readable dataset");
  Handle type(H5Dget_type(d.get()), H5Tclose);
  FT_CHECK(H5Tequal(type.get(), native_type<T>()) > 0, path_, ": dataset '", dataset, "' holds ",
           describe_type(type.get()), ", expected ", describe_type(native_type<T>()));
  Handle space(H5Dget_space(d.get()), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  FT_CHECK(n >= 0 && static_cast<size_t>(n) == count, path_, ": dataset '", dataset, "' has ", n,
           " elements, expected ", count);
  FT_CHECK(H5Dread(d.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0, path_, ": reading dataset '",
           dataset, "' failed (truncated or corrupt file)");
}

template <class T>
std::vector<T> Hdf5File::read(const std::string& dataset) const {
  int64_t n = 1;
  for (int64_t d : shape(dataset)) n *= d;
  std::vector<T> out(static_cast<size_t>(n));
  read_into(dataset, out.data(), out.size());
  return out;
}

namespace {

// Writes one attribute, replacing an older one of the same name.
void write_attribute(hid_t file, const std::string& path, const std::string& object, const std::string& key, hid_t type,
                     const void* value) {
  Handle o(H5Oopen(file, object.c_str(), H5P_DEFAULT), H5Oclose);
  FT_CHECK(o.valid(), path, ": no object '", object, "' for attribute '", key, "'");
  if (H5Aexists(o.get(), key.c_str()) > 0) H5Adelete(o.get(), key.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate2(o.get(), key.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  FT_CHECK(a.valid() && H5Awrite(a.get(), type, value) >= 0, path, ": cannot write attribute '", key, "' on '", object,
           "'");
}

// Opens an attribute for reading and checks its class; `what` names the expected kind.
Handle open_attribute(hid_t file, const std::string& path, const std::string& object, const std::string& key,
                      H5T_class_t expected, const char* what) {
  Handle o(H5Oopen(file, object.c_str(), H5P_DEFAULT), H5Oclose);
  FT_CHECK(o.valid(), path, ": no object '", object, "'");
  FT_CHECK(H5Aexists(o.get(), key.c_str()) > 0, path, ": '", object, "' has no attribute '", key, "'");
  Handle a(H5Aopen(o.get(), key.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(a.get()), H5Tclose);
  FT_CHECK(a.valid() && H5Tget_class(type.get()) == expected, path, ": attribute '", key, "' of '", object, "' is not ",
           what);
  return a;
}

}  // namespace

void Hdf5File::set_attribute(const std::string& object, const std::string& key, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(1, value.size()));  // HDF5 has no zero-length fixed strings
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  std::string padded = value;
  padded.resize(std::max<size_t>(1, value.size()), '\0');
  write_attribute(id_, path_, object, key, type.get(), padded.data());
}

void Hdf5File::set_attribute(const std::string& object, const std::string& key, int64_t value) {
  write_attribute(id_, path_, object, key, H5T_NATIVE_INT64, &value);
}

void Hdf5File::set_attribute(const std::string& object, const std::string& key, double value) {
  write_attribute(id_, path_, object, key, H5T_NATIVE_DOUBLE, &value);
}

std::string Hdf5File::string_attribute(const std::string& object, const std::string& key) const {
  Handle a = open_attribute(id_, path_, object, key, H5T_STRING, "a string");
  Handle type(H5Aget_type(a.get()), H5Tclose);
  FT_CHECK(H5Tis_variable_str(type.get()) == 0, path_, ": attribute '", key, "' is a variable-length string");
  std::string value(H5Tget_size(type.get()), '\0');
  FT_CHECK(H5Aread(a.get(), type.get(), value.data()) >= 0, path_, ": cannot read attribute '", key, "'");
  value.erase(value.find_last_not_of('\0') + 1);
  return value;
}

int64_t Hdf5File::int_attribute(const std::string& object, const std::string& key) const {
  Handle a = open_attribute(id_, path_, object, key, H5T_INTEGER, "an integer");
  int64_t value = 0;
  FT_CHECK(H5Aread(a.get(), H5T_NATIVE_INT64, &value) >= 0, path_, ": cannot read attribute '", key, "'");
  return value;
}

double Hdf5File::double_attribute(const std::string& object, const std::string& key) const {
  Handle a = open_attribute(id_, path_, object, key, H5T_FLOAT, "a number");
  double value = 0;
  FT_CHECK(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &value) >= 0, path_, ": cannot read attribute '", key, "'");
  return value;
}

bool Hdf5File::has_attribute(const std::string& object, const std::string& key) const {
  if (!has(object)) return false;
  Handle o(H5Oopen(id_, object.c_str(), H5P_DEFAULT), H5Oclose);
  return o.valid() && H5Aexists(o.get(), key.c_str()) > 0;
}

void Hdf5File::flush() { FT_CHECK(H5Fflush(id_, H5F_SCOPE_GLOBAL) >= 0, path_, ": flush failed (disk full?)"); }

#define FT_HDF5_INSTANTIATE(T)                                                                 \
  template void Hdf5File::write<T>(const std::string&, const T*, const std::vector<int64_t>&); \
  template std::vector<T> Hdf5File::read<T>(const std::string&) const;                         \
  template void Hdf5File::read_into<T>(const std::string&, T*, size_t) const;
FT_HDF5_INSTANTIATE(float)
FT_HDF5_INSTANTIATE(double)
FT_HDF5_INSTANTIATE(int32_t)
FT_HDF5_INSTANTIATE(int64_t)
FT_HDF5_INSTANTIATE(uint8_t)
FT_HDF5_INSTANTIATE(uint16_t)
FT_HDF5_INSTANTIATE(uint32_t)
FT_HDF5_INSTANTIATE(uint64_t)
#undef FT_HDF5_INSTANTIATE

}  // namespace ft::io
