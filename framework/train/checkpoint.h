// Checkpoints: one HDF5 file per saved step holding everything an exact resume needs (weights,
// AdamW moments and step counts, generator and loader positions, the loss scaler, the recipe),
// written through a temporary file and a rename so a killed run never leaves a broken file.
//
// What is not obvious: HDF5 reads a flipped bit inside a dataset without complaint, so every
// dataset's SHA-256 is listed in a manifest dataset whose own SHA-256 is a root attribute, and
// every read checks them. docs/checkpoints.md describes the layout and the versioning rule.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "framework/optim/adamw.h"
#include "framework/optim/loss_scaler.h"
#include "framework/parameter.h"
#include "framework/random.h"

namespace ft::train {

// The layout version this build writes and the newest it reads (older ones are read too).
inline constexpr int64_t kCheckpointFormatVersion = 1;

// What a checkpoint holds besides weights and optimizer state.
struct CheckpointState {
  std::map<std::string, GeneratorState> rng;  // by role ("dropout", "sampling", ...); no '/' in names
  data::LoaderState loader;
  LossScalerState scaler;
  std::string recipe_text;  // the effective recipe YAML
};

// "<dir>/step_000060.h5" (at least six digits).
std::string checkpoint_path(const std::string& dir, int64_t step);

// Writes checkpoint_path(dir, step) atomically (the directory is created if needed), then
// deletes all but the newest `keep` (>= 1) of the checkpoints with a step up to this one;
// checkpoints with a higher step (an abandoned later run) are left alone. Parameters may live
// on any device. `masters` are the fp32 master weights of a mixed-precision run; the optimizer's
// parameters must each be one of `params` or `masters` (its state is saved under that name).
// Returns the path written.
std::string save_checkpoint(const std::string& dir, int64_t step, const std::vector<NamedParameter>& params,
                            const AdamW& optimizer, const CheckpointState& state, int64_t keep,
                            const std::vector<NamedParameter>& masters = {});

// Restores parameters (and masters, when given) by name with shape and dtype checked, the
// optimizer's moments and step counts, and `state`; returns the checkpoint's step. The whole
// checkpoint is read and verified before anything changes: on an error nothing is modified.
int64_t load_checkpoint(const std::string& path, const std::vector<NamedParameter>& params, AdamW& optimizer,
                        CheckpointState& state, const std::vector<NamedParameter>& masters = {});

// Weights only (generation, conversion): every parameter by name, shape and dtype checked. A
// mixed-precision run's f32 master is read where the parameter given is f32.
void load_checkpoint_parameters(const std::string& path, const std::vector<NamedParameter>& params);

// The effective recipe YAML the run saved (checksum checked): what rebuilds its model.
std::string load_checkpoint_recipe(const std::string& path);
// Reads the whole file and checks its format version, manifest and every dataset's checksum.
// Throws ft::Error naming the file and what is wrong.
void verify_checkpoint(const std::string& path);

// The newest checkpoint in `dir` (by step) that verifies. Newer ones that do not are skipped
// with a warning on stderr naming them and why. nullopt when there is none (or no directory).
std::optional<std::string> find_latest_checkpoint(const std::string& dir);

}  // namespace ft::train
