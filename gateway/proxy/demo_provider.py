"""The `demo` model's provider: an in-process LiteLLM custom provider that answers without any provider key and
bills like a real one, so a newcomer's first calls stay inside their holds (`gateway reconcile` shows no loss).

LiteLLM's `mock_response` reports a fixed synthetic usage whatever max_tokens says, so a hold computed from
max_tokens did not bound it. This answer is a fixed sentence cut to max_tokens (or max_completion_tokens) tokens;
its usage is the prompt as OpenAI counts it (never above the hold's bound, gateway.proxy.pricing) and the tokens
it produced. One choice whatever `n` asks (the hold covers n; a demo bills at most one).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk, ModelResponse

from gateway.proxy.pricing import count_prompt_tokens

REPLY = "Hello from the credit-gateway demo model. Your call was held, priced and settled."
TOKENIZER = "gpt-3.5-turbo"  # cl100k_base: the answer's tokens, cut and counted with one tokenizer


def answer(messages: list[Any], optional_params: dict[str, Any]) -> tuple[str, str, int, int]:
    """(text, finish reason, prompt tokens, completion tokens) of the demo's answer to `messages`."""
    limit = optional_params.get("max_completion_tokens") or optional_params.get("max_tokens")
    tokens = litellm.encode(model=TOKENIZER, text=REPLY)
    cut = tokens if limit is None else tokens[: max(int(limit), 0)]
    text = litellm.decode(model=TOKENIZER, tokens=list(cut)) if cut else ""
    counted = litellm.token_counter(model=TOKENIZER, messages=messages)  # as OpenAI counts a chat prompt
    prompt = min(counted, count_prompt_tokens("demo", {"messages": messages}, False, 0))  # never above the hold's
    return text, "stop" if len(cut) == len(tokens) else "length", prompt, len(cut)


class DemoProvider(CustomLLM):
    async def acompletion(  # type: ignore[override]  # LiteLLM passes them by keyword
        self, model: str, messages: list[Any], model_response: ModelResponse, optional_params: dict[str, Any], **_: Any
    ) -> ModelResponse:
        text, finish, prompt, completion = answer(messages, optional_params)
        return ModelResponse(
            id=f"chatcmpl-demo-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=model,
            choices=[{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        )

    async def astreaming(  # type: ignore[override]  # LiteLLM passes them by keyword
        self, model: str, messages: list[Any], optional_params: dict[str, Any], **_: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        text, finish, prompt, completion = answer(messages, optional_params)
        words = text.split(" ")
        for i, word in enumerate(words):
            yield GenericStreamingChunk(
                text=word if i == 0 else " " + word,
                tool_use=None,
                is_finished=False,
                finish_reason="",
                usage=None,
                index=0,
            )
        yield GenericStreamingChunk(
            text="",
            tool_use=None,
            is_finished=True,
            finish_reason=finish,
            usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
            index=0,
        )


demo_provider = DemoProvider()
