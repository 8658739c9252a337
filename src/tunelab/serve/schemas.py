"""Request bodies of the OpenAI-compatible API (the subset tunelab serves), with OpenAI's
ranges. Fields that OpenAI clients send but this server does not implement (tools, images,
several choices, logprobs) are declared so that a request using them gets a clear 400 naming
the field instead of being silently ignored."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOKENS_LIMIT = 4096
MAX_MODEL_NAME = 256
MAX_STOP_CHARS = 256
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # a signed 64-bit integer, as OpenAI documents

# What the schema promises for fields that are refused unless empty or off: clients and
# fuzzers read the real contract, and a request that breaks it still gets the clear message
# of the validator below rather than a generic one.
NONE_ALLOWED = {"maxItems": 0}
StopText = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
PromptText = Annotated[str, Field(min_length=1)]


class ContentPart(BaseModel):
    """One part of a message's content. Only text parts are served: this server runs
    text-only models."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(..., json_schema_extra={"enum": ["text"]})
    text: str | None = Field(None, json_schema_extra={"type": "string"})

    @field_validator("type")
    @classmethod
    def _text_only(cls, value: str) -> str:
        if value != "text":
            raise ValueError(f"content parts of type '{value[:40]}' are not supported: this server serves "
                             "text-only models (send text parts or a string)")
        return value

    @field_validator("text")
    @classmethod
    def _has_text(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("a text part needs its 'text'")
        return value


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. "name", accepted and not used
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    tool_calls: list[dict] | None = Field(None, description="not supported: refused when given",
                                          json_schema_extra=NONE_ALLOWED)

    @field_validator("tool_calls")
    @classmethod
    def _no_tool_calls(cls, value):
        if value:
            raise ValueError("tool calls are not supported by this server")
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content)

    def for_template(self) -> dict:
        # chat templates know system, user and assistant; OpenAI's "developer" role is the
        # system prompt of newer models
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _Sampling(BaseModel):
    # unknown OpenAI fields (user, metadata, ...) are accepted and ignored; NaN and infinity
    # are refused so no sampling parameter can be non-finite
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    model: str = Field(..., min_length=1, max_length=MAX_MODEL_NAME)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="below 1e-5 is greedy, like 0")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: StopText | Annotated[list[StopText], Field(max_length=4)] | None = Field(
        None, description="up to 4 sequences")
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stream_options: StreamOptions | None = None  # {"include_usage": true}: a last chunk carries usage
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0, description="not supported: only 0")
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0, description="not supported: only 0")
    logit_bias: dict[str, float] | None = Field(None, max_length=0, description="not supported: only empty")

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def budget(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = Field("text", description="only 'text'", json_schema_extra={"enum": ["text"]})

    @field_validator("type")
    @classmethod
    def _text_only(cls, value: str) -> str:
        if value != "text":
            raise ValueError("only the 'text' response format is supported")
        return value


class ChatRequest(_Sampling):
    messages: list[Message] = Field(..., min_length=1)
    logprobs: bool | None = Field(None, description="not supported: refused when true",
                                  json_schema_extra={"enum": [False, None]})
    tools: list[dict] | None = Field(None, description="not supported: refused when given",
                                     json_schema_extra=NONE_ALLOWED)
    tool_choice: str | dict | None = Field(None, description="not supported: only 'none'",
                                           json_schema_extra={"enum": ["none", None]})
    functions: list[dict] | None = Field(None, description="not supported: refused when given",
                                         json_schema_extra=NONE_ALLOWED)
    function_call: str | dict | None = Field(None, description="not supported: only 'none'",
                                             json_schema_extra={"enum": ["none", None]})
    response_format: ResponseFormat | None = None

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value):
        if value:
            raise ValueError("tools and function calling are not supported by this server")
        return value

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, value):
        if value is not None and value != "none":
            raise ValueError("tools and function calling are not supported by this server (only 'none')")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value):
        if value:
            raise ValueError("logprobs are not supported by this server")
        return value

    def template_messages(self) -> list[dict]:
        return [m.for_template() for m in self.messages]

    def characters(self) -> int:
        return sum(len(m.text()) for m in self.messages)


class CompletionRequest(_Sampling):
    prompt: PromptText | Annotated[list[PromptText], Field(min_length=1, max_length=1)] = Field(
        ..., description="a non-empty string (or a list holding one)")
    logprobs: int | None = Field(None, description="not supported: refused when given",
                                 json_schema_extra={"enum": [None]})
    echo: bool = Field(False, description="not supported: only false", json_schema_extra={"enum": [False]})
    best_of: int | None = Field(None, ge=1, le=1, description="one choice per request")
    suffix: str | None = Field(None, description="not supported: refused when given",
                               json_schema_extra={"enum": [None]})

    @field_validator("logprobs", "suffix")
    @classmethod
    def _unsupported(cls, value, info):
        if value is not None:
            raise ValueError(f"'{info.field_name}' is not supported by this server")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value):
        if value:
            raise ValueError("echo is not supported by this server")
        return value

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(..., min_length=1, max_length=128)
    rating: int | None = Field(None, ge=-1, le=5, description="-1/1 thumbs or a 1-5 score")
    preferred_output: str | None = Field(None, max_length=100_000)
    comment: str | None = Field(None, max_length=10_000)
