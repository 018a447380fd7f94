// `flashtrain info`: the build (version, CUDA or not, OpenMP threads) and the devices present.
#include <omp.h>

#include <cstdio>

#include "framework/device.h"
#include "tools/flashtrain/commands.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#endif

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
#ifdef FLASHTRAIN_HAS_CUDA
    for (int d = 0; d < cuda_device_count(); ++d) {
      const cudaDeviceProp& p = cuda::device_properties(d);
      std::printf("  cuda:%d  %s, compute capability %d.%d, %.1f GiB, %d SMs\n", d, p.name, p.major, p.minor,
                  static_cast<double>(p.totalGlobalMem) / (1 << 30), p.multiProcessorCount);
    }
#endif
    std::printf("openmp threads: %d\n", omp_get_max_threads());
  });
}

}  // namespace ft::tools
