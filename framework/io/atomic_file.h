// Writes a file so that readers see either the old file or the complete new one, never a torn
// write: the content goes to a temporary beside the target, is flushed to disk, and is renamed
// over it. The temporary lives in the same directory because rename is atomic only within one
// file system.
#pragma once

#include <functional>
#include <string>

namespace ft::io {

// Calls `write(temp_path)`, which must create and fill temp_path (`<path>.tmp-<pid>`); then
// fsyncs it, renames it to `path` and fsyncs the directory. If `write` throws, or any step
// fails, the temporary is removed, `path` is left as it was, and the error propagates (failed
// system calls are ft::Error naming the file).
void write_file_atomically(const std::string& path, const std::function<void(const std::string& temp_path)>& write);

// write_file_atomically with `text` as the whole content (a config, a summary, a script).
void write_text_file_atomically(const std::string& path, const std::string& text);

}  // namespace ft::io
