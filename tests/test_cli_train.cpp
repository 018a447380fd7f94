// `flashtrain train` as a user runs it: a run killed with SIGKILL and resumed repeats the
// losses and final weights of an uninterrupted run bit for bit; a damaged newest checkpoint is
// skipped with a warning; the finished run samples text and exports to Hugging Face's format;
// a fresh run refuses to overwrite an earlier run's checkpoints; and
// each class of recipe mistake ends with exit code 1 and a message naming the file, the line
// and the key.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "framework/error.h"
#include "framework/io/hdf5_file.h"
#include "tests/support/run_tool.h"
#include "tests/support/small_corpus.h"
#include "tests/support/temp_dir.h"

extern char** environ;

using namespace ft;
namespace fs = std::filesystem;

namespace {

using ft::testing::run_tool;
using ft::testing::small_corpus;
using ft::testing::ToolResult;

// A one-block GPT-2 for 60 steps of 2 x 16 tokens, with checkpoints every 30 steps.
std::string write_recipe(const testing::TempDir& dir) {
  const std::string path = dir.path() + "/resume.yaml";
  std::ofstream(path) << "name: resume\n"
                      << "device: cpu\n"
                      << "seed: 7\n"
                      << "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16, dropout: 0.1}\n"
                      << "data: {source: " << small_corpus(dir) << ", format: text, val_fraction: 0.1, seq_len: 16}\n"
                      << "optim: {batch_size: 2, steps: 60, warmup_steps: 5, lr: 3.0e-3}\n"
                      << "checkpoint: {every: 30, keep: 3}\n"
                      << "logging: {every: 1, val_every: 20, val_batches: 2, sample_every: 0}\n";
  return path;
}

// The "loss" of every line of a metrics file, as written (the shortest round-trip text).
std::vector<std::string> losses(const std::string& metrics_path) {
  std::vector<std::string> out;
  std::ifstream in(metrics_path);
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find("\"loss\": ");
    REQUIRE(at != std::string::npos);
    out.push_back(line.substr(at + 8, line.find(',', at) - at - 8));
  }
  return out;
}

// Starts flashtrain in the background, its output into `log`.
pid_t spawn_tool(const std::vector<std::string>& arguments, const std::string& log) {
  std::vector<std::string> words = {FLASHTRAIN_BINARY};
  words.insert(words.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int status = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(status == 0);
  return pid;
}

// Every parameter of a checkpoint, by dataset name, as raw float32 values.
std::map<std::string, std::vector<float>> checkpoint_parameters(const std::string& path) {
  io::Hdf5File f = io::Hdf5File::open(path);
  std::map<std::string, std::vector<float>> out;
  for (const std::string& name : f.children("params")) out[name] = f.read<float>("params/" + name);
  REQUIRE(!out.empty());
  return out;
}

}  // namespace

TEST_CASE("train: a run killed after step 30 and resumed repeats the uninterrupted run bit for bit") {
  testing::TempDir dir;
  const std::string recipe = write_recipe(dir);
  const std::string straight = dir.path() + "/straight", killed = dir.path() + "/killed";

  const ToolResult full = run_tool("train " + recipe + " --set run_dir=" + straight);
  REQUIRE_MESSAGE(full.exit_code == 0, full.output);
  const std::vector<std::string> expected = losses(straight + "/metrics.jsonl");
  REQUIRE(expected.size() == 60);

  // The second run is killed (SIGKILL, no chance to clean up) once its step-30 checkpoint exists.
  const pid_t pid = spawn_tool({"train", recipe, "--set", "run_dir=" + killed}, dir.path() + "/killed.log");
  const fs::path checkpoint_30 = fs::path(killed) / "checkpoints" / "step_000030.h5";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!fs::exists(checkpoint_30) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(fs::exists(checkpoint_30));
  REQUIRE_MESSAGE(WIFSIGNALED(status), "the run ended before it could be killed");
  CHECK_FALSE(fs::exists(fs::path(killed) / "checkpoints" / "step_000060.h5"));

  // A damaged newer checkpoint (as a crash of another kind might leave) is skipped, not loaded.
  std::ofstream(fs::path(killed) / "checkpoints" / "step_000045.h5") << "half a checkpoint";
  const ToolResult resumed = run_tool("train " + recipe + " --set run_dir=" + killed + " --resume");
  REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.output);
  CHECK(resumed.output.find("step_000045.h5") != std::string::npos);
  CHECK(resumed.output.find("resumed from") != std::string::npos);
  CHECK(resumed.output.find("(step 30)") != std::string::npos);

  CHECK(losses(killed + "/metrics.jsonl") == expected);
  CHECK(checkpoint_parameters(killed + "/checkpoints/step_000060.h5") ==
        checkpoint_parameters(straight + "/checkpoints/step_000060.h5"));

  // The finished run samples the same text for the same seed, and exports as a Hugging Face folder.
  const std::string generate = "generate " + straight + " --prompt 'The river' --tokens 8 --seed 3";
  const ToolResult sample = run_tool(generate);
  REQUIRE_MESSAGE(sample.exit_code == 0, sample.output);
  CHECK(sample.output.find("--- sample 1\nThe river") != std::string::npos);
  CHECK(run_tool(generate).output == sample.output);
  const ToolResult exported = run_tool("convert export --checkpoint " + straight + " --out " + dir.path() + "/hf");
  REQUIRE_MESSAGE(exported.exit_code == 0, exported.output);
  CHECK(fs::exists(dir.path() + "/hf/model.safetensors"));
  CHECK(run_tool("convert hf-check " + dir.path() + "/hf").exit_code == 0);

  // Without --resume, the finished run's checkpoints are not overwritten.
  const ToolResult again = run_tool("train " + recipe + " --set run_dir=" + straight);
  CHECK(again.exit_code == 1);
  CHECK(again.output.find("holds checkpoints of an earlier run") != std::string::npos);
}

TEST_CASE("train: recipe mistakes end with exit code 1 and a message naming file, line and key") {
  testing::TempDir dir;
  struct Mistake {
    std::string yaml, expected;
  };
  const std::vector<Mistake> mistakes = {
      {"name: x\noptim:\n  lrate: 0.1\n", "bad.yaml:3: unknown key optim.lrate"},
      {"name: x\noptim:\n  lr: fast\n", "bad.yaml:3: optim.lr: expected a number > 0, got 'fast'"},
      {"name: x\noptim:\n  batch_size: 0\n", "bad.yaml:3: optim.batch_size: expected"},
      {"name: x\ndata:\n  source: ./no-such-corpus.txt\n  format: text\n", "no-such-corpus.txt"},
      {"name: x\ndata:\n  dir: /no/such/data/dir\n", "/no/such/data/dir"},
  };
  for (const Mistake& m : mistakes) {
    dir.write("bad.yaml", m.yaml);
    const ToolResult r = run_tool("train " + dir.path() + "/bad.yaml --set run_dir=" + dir.path() + "/run");
    INFO(m.yaml, "\n", r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find(m.expected) != std::string::npos);
    CHECK(r.output.find("flashtrain: error: ") != std::string::npos);
  }
  const ToolResult missing = run_tool("train " + dir.path() + "/absent.yaml");
  CHECK(missing.exit_code != 0);
  CHECK(missing.output.find("absent.yaml") != std::string::npos);
}
