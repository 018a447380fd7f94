#!/usr/bin/env python3
"""Logit parity between transformers' GPT2LMHeadModel and flashtrain's Hugging Face import/export.

Two directions, each on a small random model:
  hf -> flashtrain  builds a random GPT2LMHeadModel (every parameter perturbed, so biases and
                    LayerNorm gains matter), saves it with save_pretrained, and compares its logits
                    with `flashtrain convert hf-check DIR --save-logits`.
  flashtrain -> hf  writes a random model with `flashtrain convert export --random tiny`, loads it
                    with from_pretrained (which must report no missing, unexpected or mismatched
                    keys), and compares the two models' logits the same way.
--extra DIR adds any other Hugging Face GPT-2 directory (e.g. a downloaded gpt2) to compare.

Needs PyTorch, transformers and safetensors (transformers depends on it); the safetensors package
also reads flashtrain's logits file, which checks flashtrain's writer against the reference
reader. Exits 0 when every comparison is within --tolerance (relative to the largest |logit|),
1 when one is not, 2 when a package is missing.

Example (from the repository root, after building):
  python3 tools/hf_gpt2_parity.py --flashtrain build/flashtrain
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import transformers
    from safetensors.torch import load_file
    from transformers import GPT2Config, GPT2LMHeadModel
except ImportError as e:
    print(f"hf_gpt2_parity: needs torch, transformers and safetensors: {e}", file=sys.stderr)
    sys.exit(2)

IDS = [5, 17, 3, 42, 0, 63, 8, 21, 34, 55, 1, 13]  # all below the smallest vocabulary used here


def find_flashtrain():
    for path in ["build/flashtrain", "build-cuda/flashtrain", "build-cpu/flashtrain"]:
        if os.access(path, os.X_OK):
            return path
    return None


def run(cmd):
    print("$ " + " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        raise SystemExit(f"hf_gpt2_parity: command failed with code {done.returncode}")
    return done.stdout


def flashtrain_logits(flashtrain, model_dir, ids, device, out_path):
    run([flashtrain, "convert", "hf-check", model_dir, "--device", device, "--ids", ",".join(map(str, ids)),
         "--save-logits", out_path])
    return load_file(out_path)["logits"].double()


@torch.no_grad()
def hf_logits(model, ids):
    return model(torch.tensor([ids])).logits.double()


def compare(name, reference, ours, tolerance):
    if reference.shape != ours.shape:
        print(f"{name:<22} FAIL shapes differ: transformers {tuple(reference.shape)}, flashtrain {tuple(ours.shape)}")
        return False
    max_abs = (reference - ours).abs().max().item()
    relative = max_abs / max(reference.abs().max().item(), 1e-30)
    same_argmax = bool((reference.argmax(-1) == ours.argmax(-1)).all())
    ok = relative <= tolerance and same_argmax
    print(f"{name:<22} {'PASS' if ok else 'FAIL'}  logits {tuple(reference.shape)}  max |diff| {max_abs:.3e}  "
          f"relative {relative:.3e}  argmax {'same' if same_argmax else 'DIFFERS'}")
    return ok


def save(model, directory):
    try:
        model.save_pretrained(directory, safe_serialization=True)
    except TypeError:  # versions where safetensors is the only format take no such argument
        model.save_pretrained(directory)
    if not glob.glob(os.path.join(directory, "model*.safetensors")):
        raise SystemExit(f"hf_gpt2_parity: save_pretrained wrote no safetensors in {directory}")


def hf_to_flashtrain(args, work):
    torch.manual_seed(args.seed)
    config = GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # wte and lm_head are one parameter, so they stay tied
            p.add_(torch.randn_like(p) * 0.2)
    directory = os.path.join(work, "from_hf")
    save(model, directory)
    ours = flashtrain_logits(args.flashtrain, directory, IDS, args.device, os.path.join(work, "from_hf.logits"))
    return compare("hf -> flashtrain", hf_logits(model, IDS), ours, args.tolerance)


def flashtrain_to_hf(args, work):
    directory = os.path.join(work, "from_flashtrain")
    run([args.flashtrain, "convert", "export", "--random", "tiny", "--out", directory, "--seed", str(args.seed)])
    model, info = GPT2LMHeadModel.from_pretrained(directory, output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if "missing_keys" in problems:  # the causal-mask buffers are not weights
        problems["missing_keys"] = [k for k in problems["missing_keys"] if not k.endswith(("attn.bias", "masked_bias"))]
        if not problems["missing_keys"]:
            del problems["missing_keys"]
    if problems:
        print(f"flashtrain -> hf        FAIL from_pretrained reported {problems}")
        return False
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        print("flashtrain -> hf        FAIL lm_head is not tied to wte after loading")
        return False
    ours = flashtrain_logits(args.flashtrain, directory, IDS, args.device, os.path.join(work, "from_ft.logits"))
    return compare("flashtrain -> hf", hf_logits(model, IDS), ours, args.tolerance)


def extra_directory(args, work, directory):
    model = GPT2LMHeadModel.from_pretrained(directory).eval()
    ids = [i % model.config.vocab_size for i in IDS]
    ours = flashtrain_logits(args.flashtrain, directory, ids, args.device, os.path.join(work, "extra.logits"))
    return compare(os.path.basename(os.path.normpath(directory)), hf_logits(model, ids), ours, args.tolerance)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flashtrain", default=find_flashtrain(), help="the flashtrain binary")
    parser.add_argument("--device", default="cpu", help="device for flashtrain (cpu or cuda[:N])")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest |diff| / largest |logit| allowed")
    parser.add_argument("--extra", action="append", default=[], help="another Hugging Face GPT-2 directory")
    args = parser.parse_args()
    if not args.flashtrain:
        parser.error("no flashtrain binary found under build*/; pass --flashtrain")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    with tempfile.TemporaryDirectory(prefix="hf_gpt2_parity-") as work:
        results = [hf_to_flashtrain(args, work), flashtrain_to_hf(args, work)]
        results += [extra_directory(args, work, d) for d in args.extra]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
