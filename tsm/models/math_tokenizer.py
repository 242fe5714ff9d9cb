r"""A small tokenizer for from-scratch models, built from the differentiation task's alphabet.

The vocabulary is a fixed, ordered list (no training corpus: a build is deterministic and needs
nothing but this file; ids are positions in the list):

- special tokens ``<|pad|>``, ``<|unk|>``, ``<|endoftext|>`` (bos), ``<|im_start|>``,
  ``<|im_end|>`` (eos: it ends every chat turn, so generation stops there);
- 256 byte tokens ``<0x00>`` .. ``<0xFF>``: a character outside the vocabulary is spelled as
  its UTF-8 bytes, so *every* string round-trips exactly (decode(encode(s)) == s);
- printable ASCII, newline, tab and a few math symbols (``·``, ``′``, ``π``), one token each;
  a space plus one ASCII letter (`` x``, `` e``) is one token too;
- LaTeX commands (``\frac``, ``\sin``, ``\cdot``, ``\sqrt``, ``\boxed``, ``\left`` ...) and
  escapes (``\,``, ``\{``), plain function names (``sin``, ``exp``, ``Abs``; also with a
  leading space), a few symbol runs (``^{``, ``}{``, ``{(``, `` )}``, ``**``, `` + ``);
- words of prompts and derivations, bare, with a leading space and capitalized
  (``the``, `` the``, ``The``).

Encoding is two steps, so the same text always becomes the same tokens whatever surrounds it:

1. A pre-tokenizer cuts the text into chunks, taking at each position the first that matches
   of: a symbol run, a LaTeX command (``\`` + letters), a LaTeX escape (``\`` + one symbol), a
   word (an optional space + ASCII letters), one digit, one character. Digits are always chunks
   of their own, so numbers are read digit by digit.
2. A chunk in the vocabulary is one token; any other chunk (an unknown word) is split into the
   fewest pieces (a Unigram model with equal scores), and characters that no piece covers into
   byte tokens.

No normalizer, nothing stripped: the decoder only joins pieces and turns bytes back into text.
`build_math_tokenizer()` returns a standard `PreTrainedTokenizerFast` with a ChatML template;
`save_pretrained` / `AutoTokenizer.from_pretrained` round-trip it.
"""

from __future__ import annotations

import re
import string

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS = "<|pad|>", "<|unk|>", "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, UNK, BOS, IM_START, IM_END)

# ChatML, as SmolLM2 and Qwen use it, without a default system prompt: the data always sends one.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Vocabulary data: a few tokens per line read better than the formatter's one per line.
# fmt: off
LATEX_COMMANDS = _split(r"""
    \frac \dfrac \tfrac \sqrt \cdot \times \div \pm \mp \sin \cos \tan \sec \csc \cot \arcsin
    \arccos \arctan \operatorname \sinh \cosh \tanh \coth \exp \log \ln \pi \infty \boxed \left
    \right \big \Big \mathrm \text \textbf \mathbf \quad \qquad \displaystyle \partial \prime
    \to \rightarrow \Rightarrow \implies \approx \neq \le \leq \ge \geq \cdots \ldots \dots \int
    \sum \lim \alpha \beta \gamma \theta \lambda \mu \sigma \phi \begin \end
""")

LATEX_ESCAPES = _split(r"\, \; \! \\ \{ \} \( \) \[ \] \|")

FUNCTION_NAMES = _split("""
    sin cos tan sec csc cot asin acos atan acot asec acsc arcsin arccos arctan sinh cosh tanh
    coth sech csch asinh acosh atanh exp log ln sqrt Abs abs sign pi oo dx dy frac cdot
""")

# Runs of symbols that the renderers print often (sympy's `x**2 + 3*x`, LaTeX's `\sin{(x )}`).
# They are matched before anything else, longest first. No runs of closing brackets ("}}"):
# those would glue the ends of different groups, and tokens would depend on the nesting.
SYMBOL_RUNS = (
    " )}", "}^{", "^{", "_{", "}{", "{(", ")}", "**", " + ", " - ", " = ", " * ", " / ",
    "\n\n", "$$", "...", ": ", ". ", ", ",
)

# A few non-ASCII characters that show up in math text; everything else uses byte tokens.
UNICODE_CHARS = tuple("·×−′→≠≤≥π√∞²³∂–—")

# Whole-word tokens (each also with a leading space and capitalized): chat roles, the words of
# prompts ("Differentiate the following function with respect to x"), and of derivations.
WORDS = _split("""
    system user assistant a an the of to in on at by for with and or is are be it its this that
    these what which as if then so we you your us let here there each all both not from into
    using use apply applying given find compute calculate determine evaluate differentiate
    differentiating differentiation derivative derivatives derive function functions expression
    respect variable following below above please reason step steps put final answer within
    write show work result simplify simplified simplifies gives give get have has equals equal
    value rule rules sum difference product quotient chain power constant multiple inner outer
    term terms factor numerator denominator coefficient exponent base linear polynomial
    trigonometric exponential logarithmic logarithm natural composite hyperbolic elementary
    reciprocal square root inverse first second now next finally therefore thus hence where
    since because combine combining substitute substituting rewrite recall note times plus
    minus over divided multiply multiplied sine cosine tangent secant cosecant cotangent one two
    zero part parts take
""")
# fmt: on


def chunk_pattern() -> str:
    """The pre-tokenizer's regex: alternatives tried in order at each position."""
    runs = [re.escape(run) for run in sorted(SYMBOL_RUNS, key=len, reverse=True)]
    return "|".join([*runs, r"\\[A-Za-z]+", r"\\[^A-Za-z0-9\s]", r" ?[A-Za-z]+", r"\d", r"[\s\S]"])


def pieces() -> list[str]:
    """The ordered, de-duplicated non-special, non-byte vocabulary."""
    items: list[str] = [chr(c) for c in range(0x20, 0x7F)] + ["\n", "\t"]
    items += [" " + letter for letter in string.ascii_letters]
    items += [*UNICODE_CHARS, *LATEX_COMMANDS, *LATEX_ESCAPES, *SYMBOL_RUNS]
    items += [*FUNCTION_NAMES, *(" " + name for name in FUNCTION_NAMES)]
    for word in WORDS:
        items += [word, " " + word, word[0].upper() + word[1:]]
    return list(dict.fromkeys(items))


def build_backend() -> Tokenizer:
    """The `tokenizers` Tokenizer behind `build_math_tokenizer` (vocabulary order = ids)."""
    # Equal scores: Viterbi picks the fewest pieces, i.e. a chunk in the vocabulary is one
    # token. Byte tokens only fill in characters that no piece covers (byte_fallback), so
    # their score never competes; specials are matched as added tokens before anything else.
    vocab = [(tok, 0.0) for tok in SPECIAL_TOKENS]
    vocab += [(f"<0x{b:02X}>", -10.0) for b in range(256)]
    vocab += [(piece, -1.0) for piece in pieces()]
    tokenizer = Tokenizer(
        models.Unigram(vocab, unk_id=SPECIAL_TOKENS.index(UNK), byte_fallback=True)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(chunk_pattern()), behavior="isolated")
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False) for tok in SPECIAL_TOKENS]
    )
    return tokenizer


def build_math_tokenizer(model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """The math tokenizer as a standard HF fast tokenizer with bos/eos/pad and a chat template."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_backend(),
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        # Decoding must not touch spaces (transformers' cleanup would turn " ." into ".").
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
