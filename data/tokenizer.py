"""
The tokenizer: tiktoken, offline, byte level.

256 byte tokens (no merges, so every digit, bit and letter is its own token and nothing is ever
downloaded) plus special tokens:

    <|bos|> <|eos|> <|pad|> <|sep|>   start, end, padding, prompt/answer boundary
    <|left|> <|right|>                 who speaks in a tall dialogue (idl.py)
    <|v0|> ... <|v9|>                  valence: the right lobe's probability quantised to ten bins,
                                       fed back to the left lobe (paper eq 6, Alg 2 line 18)

A sequence is laid out as  <|bos|> prompt <|sep|> answer <|eos|>  and a feedback dialogue as
<|bos|> prompt <|sep|> attempt <|vK|> <|sep|> answer <|eos|>.

    >>> from data.tokenizer import encode, decode
    >>> decode(encode("12+5"))
    '12+5'

`--tokenizer=gpt2` would need tiktoken's gpt2 file in its local cache; this project never asks
for it, because byte-level digits are what arithmetic wants and no machine here has a network.
"""
import tiktoken

SPECIALS = (["<|bos|>", "<|eos|>", "<|pad|>", "<|sep|>", "<|left|>", "<|right|>"] +
            [f"<|v{i}|>" for i in range(10)])

enc = tiktoken.Encoding(
    name="slnbytes",
    pat_str=r"[\s\S]",                                   # every character its own piece
    mergeable_ranks={bytes([i]): i for i in range(256)},  # the 256 bytes, no merges
    special_tokens={s: 256 + i for i, s in enumerate(SPECIALS)},
)
vocab_size = enc.n_vocab  # 272
BOS, EOS, PAD, SEP, LEFT, RIGHT = (enc._special_tokens[s] for s in SPECIALS[:6])
VALENCE = [enc._special_tokens[f"<|v{i}|>"] for i in range(10)]


def encode(text: str) -> list[int]:
    """Plain text to byte tokens. Special-token text in user input stays plain bytes."""
    return enc.encode_ordinary(text)


def decode(ids) -> str:
    """Tokens to text; special tokens are written by name, stray bytes are replaced, never
    raised."""
    out, buf = [], []
    for t in ids:
        t = int(t)
        if t < 256:
            buf.append(t)
            continue
        out.append(bytes(buf).decode("utf-8", errors="replace"))
        buf = []
        out.append(SPECIALS[t - 256] if t - 256 < len(SPECIALS) else "<|?|>")
    out.append(bytes(buf).decode("utf-8", errors="replace"))
    return "".join(out)


def decode_answer(ids) -> str:
    """An answer's tokens to text: stop at the first special token (eos, pad, valence, ...)."""
    ids = [int(t) for t in ids]
    end = next((i for i, t in enumerate(ids) if t >= 256), len(ids))
    return bytes(ids[:end]).decode("utf-8", errors="replace")


def valence_token(p: float) -> int:
    """Quantise the right lobe's probability p in [0, 1] to one of ten valence tokens (eq 6)."""
    return VALENCE[min(int(p * 10), 9)]

