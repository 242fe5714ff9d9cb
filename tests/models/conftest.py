"""Fixtures for tests/models: the math tokenizer, and the embedded model converted once per session.

The embedded conversion (GGUF load + dequantize + save, ~25 s on 2 cores) runs at most once per
test session, into a temporary cache directory, never into the user's ~/.cache/tsm; only tests
marked slow use it.
"""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="session")
def math_tokenizer():
    from tsm.models.math_tokenizer import build_math_tokenizer

    return build_math_tokenizer()


@pytest.fixture(scope="session")
def embedded_gguf():
    """(model, tokenizer, seconds) loaded straight from the packaged GGUF file."""
    from tsm.models.embedded import find_gguf, load_gguf

    start = time.perf_counter()
    model, tokenizer = load_gguf(find_gguf())
    return model, tokenizer, time.perf_counter() - start


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory, embedded_gguf):
    """A TSM_CACHE_DIR root holding the converted embedded model (reusing the loaded GGUF)."""
    from tsm.models.embedded import CACHE_NAME, convert_gguf, find_gguf

    root = tmp_path_factory.mktemp("tsm_cache")
    model, tokenizer, _ = embedded_gguf
    convert_gguf(find_gguf(), root / "models" / CACHE_NAME, loaded=(model, tokenizer))
    return root
