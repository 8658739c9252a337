"""Row formats: detect them, check each row, and turn every row into chat messages.

Supported training formats (one per file):
- ``chat``:        {"messages": [{"role", "content", "weight"?, "name"?}, ...]}  (OpenAI chat fine-tuning)
- ``instruction``: {"instruction", "input"?, "output"}                          (Alpaca style)
- ``completion``:  {"prompt", "completion"}

Prompt-only formats (what policy optimisation answers: --stage ppo, rloo, grpo), one per file:
- ``prompt``:      {"prompt": str | messages ending with a user turn, "system"?}
- ``chat_prompt``: {"messages": [..., {"role": "user", ...}]}   (a conversation awaiting its answer)
Every other field of a prompt row is kept with it (e.g. "answer": the reference that a GRPO
exact-match reward compares against).

Preference formats (for reward models and DPO), also one per file:
- ``preference``:        {"prompt": str | messages, "chosen": str, "rejected": str}
- ``preference_openai``: {"input": {"messages": [...]}, "preferred_output": [assistant message],
                          "non_preferred_output": [assistant message]}   (OpenAI DPO fine-tuning)

The error kinds follow OpenAI's fine-tuning validator where one exists, so people who know
that tool recognise them.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("chat", "instruction", "completion", "prompt", "chat_prompt", "preference", "preference_openai")
PREFERENCE_FORMATS = ("preference", "preference_openai")
PROMPT_FORMATS = ("prompt", "chat_prompt")
ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = {"role", "content", "weight", "name"}
FORMAT_KEYS = {
    "chat": {"messages"},
    "instruction": {"instruction", "input", "output", "system"},
    "completion": {"prompt", "completion", "system"},
    "prompt": {"prompt", "system"},
    "chat_prompt": {"messages"},
    "preference": {"prompt", "chosen", "rejected", "system"},
    "preference_openai": {"input", "preferred_output", "non_preferred_output"},
}


@dataclass(frozen=True)
class Finding:
    line: int
    kind: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "kind": self.kind, "message": self.message}


def detect_row(obj: object) -> str | None:
    """The format a single row looks like, or None if it matches none."""
    if not isinstance(obj, dict):
        return None
    if "preferred_output" in obj or "non_preferred_output" in obj:
        return "preference_openai"
    if "chosen" in obj or "rejected" in obj:
        return "preference"
    if "messages" in obj:
        return "chat_prompt" if _ends_with_user(obj["messages"]) else "chat"
    if "instruction" in obj or "output" in obj:
        return "instruction"
    if "completion" in obj:
        return "completion"
    if "prompt" in obj:
        return "prompt"
    return None


def _ends_with_user(messages: object) -> bool:
    return isinstance(messages, list) and bool(messages) and isinstance(messages[-1], dict) \
        and messages[-1].get("role") == "user"


def file_format(row_format: str, file_format: str | None) -> str:
    """The format to check a row as, given the format of the file so far: in a completion file a
    row without its completion, and in a chat file a conversation without its answer, are rows of
    that file missing a part (an error naming the part), not rows of another format."""
    if (file_format, row_format) in (("completion", "prompt"), ("chat", "chat_prompt")):
        return file_format
    return row_format


def check_row(obj: dict, fmt: str, line: int) -> tuple[list[Finding], list[Finding]]:
    """Return (errors, warnings) for one row already known to be a dict of format ``fmt``."""
    errors: list[Finding] = []
    warnings: list[Finding] = []
    extra = sorted(set(obj) - FORMAT_KEYS[fmt])
    if extra and fmt not in PROMPT_FORMATS:  # a prompt row's other fields are kept (reward references)
        warnings.append(Finding(line, "unrecognized_key", f"ignored key(s): {', '.join(extra)}"))
    if fmt == "chat":
        errors.extend(_check_messages(obj.get("messages"), line))
    elif fmt == "instruction":
        errors.extend(_check_text_fields(obj, line, required=("instruction",), optional=("input", "system")))
        errors.extend(_check_output(obj, "output", line))
    elif fmt in PREFERENCE_FORMATS:
        errors.extend(_check_preference(obj, fmt, line))
    elif fmt == "chat_prompt":
        errors.extend(_check_prompt_messages(obj.get("messages"), "messages", line))
    elif fmt == "prompt":
        errors.extend(_check_prompt(obj, line))
    else:
        errors.extend(_check_text_fields(obj, line, required=("prompt",), optional=("system",)))
        errors.extend(_check_output(obj, "completion", line))
    return errors, warnings


def _check_text_fields(obj: dict, line: int, required: tuple[str, ...], optional: tuple[str, ...]) -> list[Finding]:
    out = []
    for key in required:
        if key not in obj:
            out.append(Finding(line, "missing_field", f"missing field '{key}'"))
        elif not isinstance(obj[key], str):
            out.append(Finding(line, "wrong_type", f"field '{key}' must be a string, got {_type(obj[key])}"))
        elif not obj[key].strip():
            out.append(Finding(line, "missing_content", f"field '{key}' is empty"))
    for key in optional:
        if key in obj and obj[key] is not None and not isinstance(obj[key], str):
            out.append(Finding(line, "wrong_type", f"field '{key}' must be a string, got {_type(obj[key])}"))
    return out


def _check_output(obj: dict, key: str, line: int) -> list[Finding]:
    if key not in obj:
        return [Finding(line, "missing_field", f"missing field '{key}'")]
    if not isinstance(obj[key], str):
        return [Finding(line, "wrong_type", f"field '{key}' must be a string, got {_type(obj[key])}")]
    if not obj[key].strip():
        return [Finding(line, "empty_output", f"field '{key}' is empty: nothing to learn from this row")]
    return []


def _check_messages(messages: object, line: int) -> list[Finding]:
    if not isinstance(messages, list) or not messages:
        return [Finding(line, "missing_messages_list", "'messages' must be a non-empty list of messages")]
    out: list[Finding] = []
    has_assistant = False
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            out.append(Finding(line, "message_missing_key", f"{where} must be an object with 'role' and 'content'"))
            continue
        for key in ("role", "content"):
            if key not in msg:
                out.append(Finding(line, "message_missing_key", f"{where} has no '{key}'"))
        unknown = sorted(set(msg) - MESSAGE_KEYS)
        if unknown:
            out.append(Finding(line, "message_unrecognized_key", f"{where} has unrecognised key(s): {', '.join(unknown)}"))
        role = msg.get("role")
        if "role" in msg and role not in ROLES:
            out.append(Finding(line, "unrecognized_role", f"{where}.role is {role!r}; expected one of {', '.join(ROLES)}"))
        content = msg.get("content")
        if "content" in msg:
            if not isinstance(content, str):
                out.append(Finding(line, "wrong_type", f"{where}.content must be a string, got {_type(content)}"))
            elif not content.strip():
                kind = "empty_output" if role == "assistant" else "missing_content"
                out.append(Finding(line, kind, f"{where}.content is empty"))
        if "weight" in msg and (isinstance(msg["weight"], bool) or msg["weight"] not in (0, 1)):
            out.append(Finding(line, "invalid_weight", f"{where}.weight must be 0 or 1"))
        if role == "assistant":
            has_assistant = True
    if not has_assistant:
        out.append(Finding(line, "no_assistant_message", "no assistant message: nothing to learn from this row"))
    return out


def _check_prompt(obj: dict, line: int) -> list[Finding]:
    prompt = obj.get("prompt")
    out = _check_text_fields(obj, line, required=(), optional=("system",))
    if isinstance(prompt, list):
        return out + _check_prompt_messages(prompt, "prompt", line)
    return out + _check_text_fields(obj, line, required=("prompt",), optional=())


def _check_prompt_messages(messages: object, key: str, line: int) -> list[Finding]:
    """A conversation awaiting its answer: valid messages whose last turn is the user's."""
    if not isinstance(messages, list) or not messages:
        return [Finding(line, "missing_messages_list", f"'{key}' must be a non-empty list of messages")]
    out = [f for f in _check_messages(messages, line) if f.kind != "no_assistant_message"]
    if not out and messages[-1].get("role") != "user":
        out.append(Finding(line, "prompt_not_user_turn", f"'{key}' must end with a user message (the turn to "
                           f"answer), not {messages[-1].get('role')!r}"))
    return [Finding(f.line, f.kind, f.message.replace("messages[", f"{key}[", 1)) for f in out]


def _check_preference(obj: dict, fmt: str, line: int) -> list[Finding]:
    out: list[Finding] = []
    if fmt == "preference":
        prompt = obj.get("prompt")
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()) or prompt == []:
            out.append(Finding(line, "missing_prompt", "no prompt: a preference pair needs the question both answers reply to"))
        elif isinstance(prompt, list):
            out.extend(f for f in _check_messages(prompt + [{"role": "assistant", "content": "-"}], line)
                       if f.kind != "no_assistant_message")
        elif not isinstance(prompt, str):
            out.append(Finding(line, "wrong_type", f"field 'prompt' must be a string or a messages list, got {_type(prompt)}"))
        sides = {"chosen": obj.get("chosen"), "rejected": obj.get("rejected")}
    else:
        messages = obj.get("input", {}).get("messages") if isinstance(obj.get("input"), dict) else None
        if not messages:
            out.append(Finding(line, "missing_prompt", "input.messages is missing or empty"))
        else:
            out.extend(f for f in _check_messages(messages + [{"role": "assistant", "content": "-"}], line)
                       if f.kind != "no_assistant_message")
        sides = {"chosen": _openai_side(obj.get("preferred_output")),
                 "rejected": _openai_side(obj.get("non_preferred_output"))}
    for side, text in sides.items():
        if text is None:
            out.append(Finding(line, "missing_field", f"missing {side} answer"))
        elif not isinstance(text, str):
            out.append(Finding(line, "wrong_type", f"{side} answer must be a string, got {_type(text)}"))
        elif not text.strip():
            out.append(Finding(line, "empty_side", f"{side} answer is empty"))
    c, r = sides["chosen"], sides["rejected"]
    if isinstance(c, str) and isinstance(r, str) and c.strip() and " ".join(c.split()) == " ".join(r.split()):
        out.append(Finding(line, "identical_pair", "chosen and rejected are the same text: nothing to prefer"))
    return out


def _openai_side(value) -> object:
    """The assistant text of an OpenAI preferred/non-preferred output list (None if absent)."""
    if value is None:
        return None
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0].get("content")
    return value if not isinstance(value, list) else None


def to_pair(obj: dict, fmt: str) -> dict:
    """A valid preference row as {"prompt": messages, "chosen": str, "rejected": str}."""
    if fmt == "preference":
        prompt = obj["prompt"]
        msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [
            {"role": m["role"], "content": m["content"]} for m in prompt]
        if obj.get("system"):
            msgs = [{"role": "system", "content": obj["system"]}] + msgs
        return {"prompt": msgs, "chosen": obj["chosen"], "rejected": obj["rejected"]}
    msgs = [{"role": m["role"], "content": m["content"]} for m in obj["input"]["messages"]]
    return {"prompt": msgs, "chosen": _openai_side(obj["preferred_output"]),
            "rejected": _openai_side(obj["non_preferred_output"])}


def _type(value: object) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )


def to_messages(obj: dict, fmt: str) -> list[dict]:
    """Convert a valid row to chat messages; each message may carry ``weight`` (0 = no loss)."""
    if fmt == "chat":
        return [
            {k: m[k] for k in ("role", "content", "weight") if k in m}
            for m in obj["messages"]
        ]
    if fmt == "instruction":
        prompt = obj["instruction"].strip()
        if obj.get("input"):
            prompt = f"{prompt}\n\n{obj['input'].strip()}"
        answer = obj["output"]
    else:
        prompt, answer = obj["prompt"], obj["completion"]
    msgs = [{"role": "system", "content": obj["system"]}] if obj.get("system") else []
    return msgs + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def to_prompt(obj: dict, fmt: str) -> list[dict]:
    """A valid prompt-only row as chat messages ending with the user turn to answer."""
    if fmt == "chat_prompt":
        return [{"role": m["role"], "content": m["content"]} for m in obj["messages"]]
    prompt = obj["prompt"]
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [
        {"role": m["role"], "content": m["content"]} for m in prompt]
    return ([{"role": "system", "content": obj["system"]}] if obj.get("system") else []) + msgs


# The keys that make up a row's prompt, per format: every other key of the row is one of its
# fields (a completion, a chosen answer, or a reference such as "answer" that rewards compare to).
PROMPT_KEYS = {"chat": {"messages"}, "chat_prompt": {"messages"}, "instruction": {"instruction", "input", "system"},
               "completion": {"prompt", "system"}, "prompt": {"prompt", "system"},
               "preference": {"prompt", "system"}, "preference_openai": {"input"}}


def fields_of(obj: dict, fmt: str) -> dict:
    """The row's fields beyond its prompt, as they are in the file."""
    return {k: v for k, v in obj.items() if k not in PROMPT_KEYS[fmt]}


def prompt_of(messages: list[dict]) -> list[dict]:
    """What a policy answers: a conversation awaiting its answer (ending with the user's turn) as
    it is, any other up to its last assistant turn."""
    if messages and messages[-1]["role"] == "user":
        return messages
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    return messages[:last]


def prompt_and_reference(messages: list[dict]) -> tuple[list[dict], str]:
    """Split a conversation into (messages up to the last assistant turn, that turn's text)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]["content"]
