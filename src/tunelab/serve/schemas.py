"""Request and response bodies of the OpenAI-compatible API (the subset tunelab serves)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOKENS_LIMIT = 4096


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown OpenAI fields (logprobs, user, ...) are accepted
    model: str
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict | None = None  # {"include_usage": true}: a last chunk carries usage

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.get("include_usage"))

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def budget(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class ChatRequest(_Sampling):
    messages: list[Message] = Field(..., min_length=1)


class CompletionRequest(_Sampling):
    prompt: str


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str
    rating: int | None = Field(None, ge=-1, le=5, description="-1/1 thumbs or a 1-5 score")
    preferred_output: str | None = None
    comment: str | None = None
