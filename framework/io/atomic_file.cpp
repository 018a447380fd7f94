#include "framework/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "framework/error.h"

namespace ft::io {

namespace {

// Flushes a file or directory to disk. A read-only descriptor suffices for fsync on Linux.
void fsync_path(const std::string& path, const char* what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  FT_CHECK(fd >= 0, path, ": cannot open ", what, " to flush it: ", std::strerror(errno));
  const bool synced = ::fsync(fd) == 0;
  const int sync_errno = errno;
  ::close(fd);
  FT_CHECK(synced, path, ": fsync of ", what, " failed: ", std::strerror(sync_errno));
}

std::string directory_of(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

void write_file_atomically(const std::string& path, const std::function<void(const std::string& temp_path)>& write) {
  const std::string temp = path + ".tmp-" + std::to_string(::getpid());
  try {
    write(temp);
    fsync_path(temp, "the temporary file");
    FT_CHECK(std::rename(temp.c_str(), path.c_str()) == 0, path, ": cannot rename ", temp,
             " over it: ", std::strerror(errno));
  } catch (...) {
    std::remove(temp.c_str());
    throw;
  }
  fsync_path(directory_of(path), "the directory");
}

void write_text_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, [&](const std::string& temp) {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    FT_CHECK(out, temp, ": cannot create");
    out << text;
    out.close();
    FT_CHECK(out, temp, ": write failed (is the disk full?)");
  });
}

}  // namespace ft::io
