"""What an API user is told when a call is refused, through the real proxy and the OpenAI SDK: an unknown model
is OpenAI's 404 `model_not_found` naming the models; a missing or unknown key says so (not an operator command);
a 402 for a call without max_tokens states the tokens its smallest hold is for. Nothing reaches the provider."""

from __future__ import annotations

import httpx
import openai
import pytest

pytestmark = pytest.mark.timeout(180)
CHAT = [{"role": "user", "content": "Say something short."}]


async def test_an_unknown_model_is_model_not_found_naming_the_models(make_customer, upstream):
    c = await make_customer()
    with pytest.raises(openai.NotFoundError) as err:
        c.client.chat.completions.create(model="gpt-9-turbo", messages=CHAT, max_tokens=5)
    body = err.value.body
    assert err.value.status_code == 404 and body["code"] == "model_not_found", body
    assert body["type"] == "invalid_request_error" and "'gpt-9-turbo'" in body["message"]
    assert "demo" in body["message"] and "gpt-4o-mini" in body["message"] and "GET /v1/models" in body["message"]
    assert upstream.calls("chat/completions") == 0


def test_a_missing_or_unknown_key_is_told_so(proxy, upstream):
    missing = httpx.post(f"{proxy.base_url}/chat/completions", json={"model": "demo", "messages": CHAT}, timeout=30)
    unknown = httpx.post(
        f"{proxy.base_url}/chat/completions",
        json={"model": "demo", "messages": CHAT},
        headers={"Authorization": "Bearer sk-cg-" + "x" * 43},
        timeout=30,
    )
    for response, says in ((missing, "No API key"), (unknown, "unknown, revoked or malformed")):
        error = response.json()["error"]
        assert response.status_code == 401 and error["code"] == "invalid_api_key", response.text
        assert says in error["message"] and "gateway keys" not in error["message"], error
    assert upstream.calls("chat/completions") == 0


async def test_a_402_without_max_tokens_states_the_tokens_of_the_smallest_hold(make_customer, upstream):
    c = await make_customer(1)  # one micro: not even the prompt and one output token
    with pytest.raises(openai.APIStatusError) as err:
        c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    message = err.value.body["message"]
    assert err.value.status_code == 402 and "needs at least" in message and "+ 1 output token;" in message, message
    assert "max_tokens was not set" in message and "never fit" in message
    assert upstream.calls("chat/completions") == 0
