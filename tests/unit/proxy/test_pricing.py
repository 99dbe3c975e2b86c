"""The prompt count of a hold: the model's tokenizer is looked up once per process, and the count stays
LiteLLM's own for the same text."""

from __future__ import annotations

import json
import os

import litellm
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import get_settings
from gateway.proxy import pricing

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=60, deadline=None)
@given(system=texts, user=texts)
def test_the_count_is_litellms_for_the_prompt_text(system, user):
    data = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for model in ("gpt-4o-mini", "claude-3-5-sonnet-20241022"):
        expected = litellm.token_counter(model=model, text=text) + pricing.FRAMING_TOKENS
        assert pricing.count_prompt_tokens(model, data, False, 50_000) == expected
    assert {"gpt-4o-mini", "claude-3-5-sonnet-20241022"} <= set(pricing._counters)  # looked up once, kept


def test_proxies_never_download_a_tokenizer_at_run_time(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    get_settings.cache_clear()
    try:
        get_settings()
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # an operator's own choice is kept
        get_settings.cache_clear()
        get_settings()
        assert os.environ["HF_HUB_OFFLINE"] == "0"
    finally:
        get_settings.cache_clear()


# ---- a prompt shaped against a sampling counter (issue 28) -----------------------------------------------------
DEAR = "\U00020000\U00020001\U00020002\U00020003"  # CJK Extension B: several tokens per character in o200k
MODEL = "gpt-4o-mini"


def exact_tokens(text: str) -> int:
    """The provider's count: the model tokenizer over the whole text, no sampling."""
    from litellm.litellm_core_utils.token_counter import _get_exact_count_function

    return _get_exact_count_function(MODEL)(text)


def shaped_prompt(length: int, dear_at: list[tuple[int, int]]) -> str:
    """Spaces (one token per many characters) with dear characters over the chosen spans."""
    chars = [" "] * length
    for start, size in dear_at:
        for i in range(start, min(start + size, length)):
            chars[i] = DEAR[i % len(DEAR)]
    return "".join(chars)


def test_a_prompt_shaped_against_litellms_samples_is_held_for_at_least_its_tokens():
    """The published attack: 16 sampled windows of 250,000 cheap characters, dear text in the gaps. LiteLLM's
    extrapolating counter says ~33,000 tokens for what bills ~1,000,000."""
    length, samples, window = 4_250_000, 16, 250_000
    stride = (length - window) // (samples - 1)
    gaps = [(k * stride + window, stride - window) for k in range(samples - 1)]
    text = shaped_prompt(length, gaps)
    data = {"messages": [{"role": "user", "content": text}], "max_tokens": 1}
    held = pricing.count_prompt_tokens(MODEL, data, False, 0)
    billed = exact_tokens(text)
    assert held >= billed > 10 * litellm.token_counter(model=MODEL, text=text)  # the attack works on LiteLLM's


@settings(max_examples=5, deadline=None)
@given(
    length=st.integers(pricing.EXACT_COUNT_MAX_CHARS - 2_000, pricing.EXACT_COUNT_MAX_CHARS + 400_000),
    spans=st.lists(st.tuples(st.integers(0, 1_400_000), st.integers(1, 60_000)), min_size=1, max_size=6),
)
def test_wherever_an_adversary_puts_dear_text_the_hold_covers_the_count(length, spans):
    text = shaped_prompt(length, spans)
    assert pricing.count_prompt_tokens(MODEL, {"messages": [{"role": "user", "content": text}]}, False, 0) >= (
        exact_tokens(text)
    )


def test_embedding_inputs_are_each_counted_by_their_own_shape():
    long_text = "word " * 6_000
    mixed = [[1], long_text]  # refused by the guard; still never counted as one token if it got here
    assert pricing.embedding_input_tokens(MODEL, mixed) == [1, exact_tokens(long_text)]
    assert pricing.embedding_input_tokens(MODEL, [5, 6, 7]) == [3]
    assert pricing.embedding_input_tokens(MODEL, [[5, 6], [7]]) == [2, 1]
    huge = ["\U00020000" * 600_000, "a" * 600_000]  # together above the exact-count budget: byte lengths
    assert pricing.embedding_input_tokens(MODEL, huge) == [2_400_000, 600_000]
