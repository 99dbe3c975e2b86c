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
