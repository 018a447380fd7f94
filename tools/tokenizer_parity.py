#!/usr/bin/env python3
"""Token ids from the reference tokenizers, to hold flashtrain's tokenizers to them.

References, built from the local vocabulary files only (no network):
  gpt2: OpenAI's encoder.py algorithm (with the `regex` module), cross-checked against tiktoken
        built from encoder.json + vocab.bpe; a disagreement between the two is reported.
  bert: transformers' BertTokenizer(vocab_file=.../vocab.txt).

Commands:
  expected  CASES -> tests/data/gpt2_expected.jsonl and bert_expected.jsonl, one JSON line per case:
            {"case": i, "text": "...", "ordinary": [ids], "special": [ids]}
            ordinary: special-token spellings are plain text; special: they are the special tokens
            (tiktoken's allowed_special="all"; BertTokenizer's default).
  compare   runs `flashtrain tokenize` (--flashtrain BIN) over the cases, random strings (--random N)
            and text files (--text FILE, line by line), and prints every line where it disagrees.

The cases file (tests/data/tokenizer_cases.txt) holds one test string per line. Blank lines and
lines starting with '#' are skipped. Escapes: \\n \\r \\t \\\\ and \\u{HEX} (any code point, e.g.
\\u{20} for a space at the end of a line, \\u{23} for a leading '#').

Example (on the GPU machine, which has tiktoken and transformers):
  python3 tools/tokenizer_parity.py expected --data ../shared/data \\
      --cases tests/data/tokenizer_cases.txt --out tests/data
"""
import argparse
import json
import os
import random
import subprocess
import sys

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"


def unescape(line):
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = line[i + 1]
        if e == "u":
            end = line.index("}", i)
            out.append(chr(int(line[i + 3:end], 16)))
            i = end + 1
            continue
        out.append({"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}[e])
        i += 2
    return "".join(out)


def read_cases(path):
    with open(path, encoding="utf-8") as f:
        return [unescape(line.rstrip("\n")) for line in f if line.strip() and not line.startswith("#")]


def bytes_to_unicode():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class OriginalGpt2:
    """The algorithm of OpenAI's gpt-2/src/encoder.py."""

    def __init__(self, data):
        import regex
        with open(os.path.join(data, "gpt2-tokenizer", "encoder.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(data, "gpt2-tokenizer", "vocab.bpe"), encoding="utf-8") as f:
            merges = [tuple(line.split()) for line in f.read().split("\n")[1:-1]]
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.pattern = regex.compile(PATTERN)
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = word
        return word

    def encode_ordinary(self, text):
        ids = []
        for piece in self.pattern.findall(text):
            token = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token))
        return ids

    def encode_special(self, text):
        ids = []
        for i, part in enumerate(text.split(END_OF_TEXT)):
            if i > 0:
                ids.append(self.encoder[END_OF_TEXT])
            ids.extend(self.encode_ordinary(part))
        return ids


def tiktoken_gpt2(data):
    import tiktoken
    with open(os.path.join(data, "gpt2-tokenizer", "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {bytes(byte_of[c] for c in token): rank for token, rank in encoder.items() if token != END_OF_TEXT}
    return tiktoken.Encoding(name="gpt2-local", pat_str=PATTERN, mergeable_ranks=ranks,
                             special_tokens={END_OF_TEXT: encoder[END_OF_TEXT]})


class Gpt2Reference:
    def __init__(self, data):
        self.tiktoken = tiktoken_gpt2(data)
        try:
            self.original = OriginalGpt2(data)
        except ImportError:
            print("parity: the regex module is missing; gpt2 expectations come from tiktoken alone", file=sys.stderr)
            self.original = None

    def encode(self, text):
        """(ordinary, special) ids; encoder.py's where it and tiktoken disagree."""
        ordinary = self.tiktoken.encode_ordinary(text)
        special = self.tiktoken.encode(text, allowed_special="all")
        if self.original:
            original = (self.original.encode_ordinary(text), self.original.encode_special(text))
            if original != (ordinary, special):
                print(f"parity: encoder.py and tiktoken disagree on {text!r}", file=sys.stderr)
            ordinary, special = original
        return ordinary, special


def load_bert_vocab(path):
    with open(path, encoding="utf-8") as f:
        return {token.rstrip("\n"): i for i, token in enumerate(f)}


class BertReference:
    """transformers' BertTokenizer on vocab.txt, cross-checked against the `tokenizers` library's
    BertWordPieceTokenizer (the same pipeline in Rust; transformers 5 wraps it)."""

    def __init__(self, data):
        import transformers
        from transformers import BertTokenizer
        path = os.path.join(data, "bert-base-uncased", "vocab.txt")
        self.vocab = load_bert_vocab(path)
        # The constructor changed across versions: keep the first one that really read the vocabulary.
        attempts = [lambda: BertTokenizer.from_pretrained(os.path.dirname(path)),
                    lambda: BertTokenizer(vocab=self.vocab), lambda: BertTokenizer(vocab_file=path)]
        self.tokenizer = None
        for attempt in attempts:
            try:
                tokenizer = attempt()
            except Exception as e:  # noqa: BLE001 - an older or newer signature
                print(f"parity: BertTokenizer: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            if tokenizer.convert_tokens_to_ids(["hello"]) == [self.vocab["hello"]] and len(tokenizer) == len(self.vocab):
                self.tokenizer = tokenizer
                break
        if self.tokenizer is None:
            raise SystemExit("parity: no BertTokenizer constructor read vocab.txt")
        print(f"parity: transformers {transformers.__version__}, {type(self.tokenizer).__name__}", file=sys.stderr)
        try:
            from tokenizers import BertWordPieceTokenizer
            self.rust = BertWordPieceTokenizer(path, lowercase=True)._tokenizer
        except ImportError:
            self.rust = None

    def encode(self, text):
        """(ordinary, special) ids, without [CLS] and [SEP] around them."""
        special = self.tokenizer.encode(text, add_special_tokens=False)
        backend = getattr(self.tokenizer, "_tokenizer", None)  # the Rust tokenizer of a "fast" one
        if backend is not None:
            ordinary = self.encode_ordinary_rust(backend, text)
        else:  # the Python implementation: basic tokenizer without never_split, then WordPiece
            pieces = [p for word in self.tokenizer.basic_tokenizer.tokenize(text, never_split=())
                      for p in self.tokenizer.wordpiece_tokenizer.tokenize(word)]
            ordinary = self.tokenizer.convert_tokens_to_ids(pieces)
        if self.rust is not None:
            rust = (self.encode_ordinary_rust(self.rust, text), self.rust.encode(text, add_special_tokens=False).ids)
            if rust != (list(ordinary), list(special)):
                print(f"parity: BertTokenizer and BertWordPieceTokenizer disagree on {text!r}", file=sys.stderr)
        return list(ordinary), list(special)

    @staticmethod
    def encode_ordinary_rust(tokenizer, text):
        tokenizer.encode_special_tokens = True  # special tokens' spellings are text
        try:
            return list(tokenizer.encode(text, add_special_tokens=False).ids)
        finally:
            tokenizer.encode_special_tokens = False


def write_expected(args):
    cases = read_cases(args.cases)
    for name, reference in (("gpt2", Gpt2Reference(args.data)), ("bert", BertReference(args.data))):
        path = os.path.join(args.out, f"{name}_expected.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for i, text in enumerate(cases):
                ordinary, special = reference.encode(text)
                f.write(json.dumps({"case": i, "text": text, "ordinary": ordinary, "special": special},
                                   ensure_ascii=False) + "\n")
        print(f"parity: wrote {len(cases)} cases to {path}", file=sys.stderr)


# Pools for random strings: every script and symbol kind the tokenizers treat differently.
POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "   \t", ".,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`",
    "'s't're've'm'll'd", "àáâãäåçèéêëìíîïñòóôõöùúûüýÿÀÉÎÕÜßæøœþðĀāĂăĄąĆćČčĐđĘęĞğİıŁłŃńŐőŒœŘřŚśŠšŢţŤťŮůŰűŸŹźŻżŽž",
    "αβγδεζηθικλμνξοπρσςτυφχψωΑΒΓΔΣΩάέήίόύώϊϋΐΰ", "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙ",
    "你好世界中文字符日本語漢字東京", "ひらがなカタカナー", "한국어텍스트안녕하세요", "العربيةمرحبا", "עבריתשלום", "हिन्दीनमस्ते",
    "ไทยสวัสดี", "٠١٢٣٤٥٦٧٨٩۰۱۲", "½¾²³ⅠⅡⅫ①", "😀😃😄👍🏽👨‍👩‍👧🇫🇷🇩🇪❤️✨🎉", "\u00a0\u2000\u2003\u3000\u202f\u0085\u2028\u2029\u1680",
    "\u0301\u0308\u0327\u200b\u200d\u00ad\ufeff", "€£¥©®™°±×÷≠≤≥∞∑√", "\u1fef\u037e\u0387\u2329", "ﬁﬂ＠ＡＢｃ",
]


def random_cases(count, seed):
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        pools = rng.sample(POOLS, rng.randint(1, 4))
        cases.append("".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 40))))
    return cases


def run_flashtrain(binary, kind, data, lines, allow_special):
    vocab = os.path.join(data, "gpt2-tokenizer" if kind == "gpt2" else "bert-base-uncased")
    command = [binary, "tokenize", "--tokenizer", kind, "--vocab", vocab] + (["--allow-special"] if allow_special else [])
    out = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True, check=True).stdout
    return [[int(x) for x in line.split()] for line in out.split("\n")[:-1]]


def compare(args):
    lines = read_cases(args.cases) if args.cases else []
    lines += random_cases(args.random, args.seed)
    for path in args.text:
        with open(path, encoding="utf-8") as f:
            lines += f.read().split("\n")
    lines = [line for line in lines if "\n" not in line]  # one line per case through the tool
    failures = 0
    for name, reference in (("gpt2", Gpt2Reference(args.data)), ("bert", BertReference(args.data))):
        expected = [reference.encode(line) for line in lines]
        for mode, allow_special in (("ordinary", False), ("special", True)):
            got = run_flashtrain(args.flashtrain, name, args.data, lines, allow_special)
            bad = [i for i, ids in enumerate(got) if ids != expected[i][allow_special]]
            failures += len(bad)
            print(f"{name} {mode}: {len(lines) - len(bad)} of {len(lines)} lines agree")
            for i in bad[:20]:
                print(f"  {lines[i]!r}\n    reference {expected[i][allow_special]}\n    flashtrain {got[i]}")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    expected = sub.add_parser("expected")
    expected.add_argument("--data", required=True, help="the shared data directory (FLASHTRAIN_DATA)")
    expected.add_argument("--cases", required=True)
    expected.add_argument("--out", required=True, help="directory for gpt2_expected.jsonl and bert_expected.jsonl")
    comp = sub.add_parser("compare")
    comp.add_argument("--data", required=True)
    comp.add_argument("--flashtrain", required=True, help="the flashtrain binary")
    comp.add_argument("--cases")
    comp.add_argument("--random", type=int, default=0, help="this many random strings")
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--text", action="append", default=[], help="a UTF-8 file, compared line by line")
    args = parser.parse_args()
    if args.command == "expected":
        write_expected(args)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
