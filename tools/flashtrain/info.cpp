// `flashtrain info`: the build (version, CUDA or not, OpenMP threads) and the devices present.
#include <omp.h>

#include <cstdio>

#include "framework/device.h"
#include "tools/flashtrain/commands.h"

namespace ft::tools {

void add_info_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("info", "Print the build configuration and the devices found");
  cmd->callback([] {
#ifdef FLASHTRAIN_HAS_CUDA
    const char* cuda = "yes";
#else
    const char* cuda = "no (CPU-only build)";
#endif
    std::printf("flashtrain %s\n", FLASHTRAIN_VERSION);
    std::printf("cuda backend:   %s\n", cuda);
    std::printf("cuda devices:   %d\n", cuda_device_count());
    std::printf("openmp threads: %d\n", omp_get_max_threads());
  });
}

}  // namespace ft::tools
