#!/usr/bin/env python3
"""Where a GPT-2 training step's GPU time goes, kernel by kernel, from Nsight Compute.

Runs `flashtrain bench train ... --steps 1` under `ncu`, timing every kernel it launches (one
metric, gpu__time_duration, with the caches and clocks left as a run has them), then takes the
kernels of one whole step (from the end of one AdamW pass to the end of the next: the bench runs
three warm-up steps and one timed step) and prints them grouped by kernel, largest first, with
their share of the step's kernel time. Kernel time leaves out what ncu does not time: the gaps
between launches and cudaMemcpy* copies, so the step's wall time (bench train's ms/step) is a
little longer than the sum.

Example (on the GPU machine, from the repository root):
  python3 tools/step_profile.py --flashtrain build/flashtrain -- --attention flash --precision bf16
Everything after `--` goes to `flashtrain bench train` (default: gpt2-124m, seq 1024, batch 16).
--csv FILE reads a saved `ncu --csv` output instead of running ncu (a file this script wrote with
--save).
"""
import argparse
import collections
import csv
import re
import subprocess
import sys

METRIC = "gpu__time_duration.sum"


def run_ncu(flashtrain, bench_args):
    command = ["ncu", "--metrics", METRIC, "--csv", "--cache-control", "none", "--clock-control", "none",
               "--print-units", "base", flashtrain, "bench", "train", "--steps", "1"] + bench_args
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"step_profile: {' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def kernel_times(ncu_csv):
    """(kernel name, microseconds) per launch, in launch order, from ncu's CSV rows."""
    rows = csv.reader(line for line in ncu_csv.splitlines() if line.startswith('"'))
    header = next(rows)
    name, metric, value = header.index("Kernel Name"), header.index("Metric Name"), header.index("Metric Value")
    return [(r[name], float(r[value].replace(",", "")) / 1e3) for r in rows if r[metric] == METRIC]


def last_step(launches):
    """The launches after the second-to-last AdamW pass up to the end of the last one."""
    pass_ends = []
    for i, (name, _) in enumerate(launches):
        if "adamw" in name.lower():
            if pass_ends and i - pass_ends[-1] <= 8:  # the same pass: a few launches apart
                pass_ends[-1] = i
            else:
                pass_ends.append(i)
    if len(pass_ends) < 2:
        sys.exit(f"step_profile: found {len(pass_ends)} AdamW passes; a whole step needs two")
    return launches[pass_ends[-2] + 1:pass_ends[-1] + 1]


def short_name(kernel):
    """The kernel's function name without its namespace, template arguments or parameters."""
    kernel = re.sub(r"^void ", "", kernel)
    kernel = re.sub(r"<unnamed>::|\(anonymous namespace\)::", "", kernel)
    kernel = re.sub(r"\(.*", "", kernel)
    kernel = re.sub(r"<.*", "", kernel)
    return kernel.split("::")[-1][:64]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flashtrain", default="build/flashtrain")
    parser.add_argument("--csv", help="read this saved ncu CSV instead of running ncu")
    parser.add_argument("--save", help="also write ncu's CSV here")
    parser.add_argument("--top", type=int, default=30, help="kernels to list (default 30)")
    parser.add_argument("bench_args", nargs="*", help="after --: arguments of flashtrain bench train")
    args = parser.parse_args()
    ncu_csv = open(args.csv).read() if args.csv else run_ncu(args.flashtrain, args.bench_args)
    if args.save:
        open(args.save, "w").write(ncu_csv)
    step = last_step(kernel_times(ncu_csv))
    total = sum(us for _, us in step)
    groups = collections.defaultdict(lambda: [0, 0.0])
    for name, us in step:
        groups[short_name(name)][0] += 1
        groups[short_name(name)][1] += us
    print(f"one step: {len(step)} kernel launches, {total / 1e3:.2f} ms of kernel time")
    print(f"| kernel | launches | ms | share |\n| --- | ---: | ---: | ---: |")
    for name, (count, us) in sorted(groups.items(), key=lambda g: -g[1][1])[:args.top]:
        print(f"| {name} | {count} | {us / 1e3:.3f} | {100 * us / total:.1f}% |")


if __name__ == "__main__":
    main()
