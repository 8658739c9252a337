"""Chat templates: the shipped named ones, a user's FILE.jinja, and putting one on a tokenizer.

A chat template turns messages into the text a model reads. Instruct models ship one; base
models do not, so ``data.chat_template`` names one for them (or replaces a model's own). The
shipped templates (``resources/templates/<name>.jinja``) end every turn with the tokenizer's
``eos_token``, so the model learns to stop on a token the decoder already stops on; where the
format has its own end-of-turn token and the vocabulary holds it as one token (``<|im_end|>``,
``<|eot_id|>``), that token becomes the eos_token and the text is exactly the named format.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import ConfigError, one_of

# The end-of-turn token of each named format that has one (see the module docstring).
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}
SAMPLE = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Say hi."},
          {"role": "assistant", "content": "Hi."}]


@dataclass(frozen=True)
class Template:
    name: str  # a shipped name, or the file's path as given
    text: str
    end_of_turn: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def shipped() -> dict[str, Path]:
    """Every shipped template by name."""
    from tunelab.resources import path

    folder = path("templates")
    return {p.stem: p for p in sorted(folder.glob("*.jinja"))}


def load(spec: str) -> Template:
    """A shipped template by name, or a Jinja file; a file that is missing, unreadable or not
    valid Jinja is a ConfigError of one line naming it (and the line, for a syntax error)."""
    named = shipped()
    if spec in named:
        return Template(spec, named[spec].read_text(encoding="utf-8"), END_OF_TURN.get(spec))
    path = Path(spec).expanduser()
    if not path.suffix == ".jinja" and not path.exists():
        raise ConfigError(one_of("chat template", spec, list(named)), hint="or a FILE.jinja")
    if not path.is_file():
        raise ConfigError(f"{path}: no such chat template file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the chat template ({exc})") from None
    check_syntax(text, str(path))
    return Template(str(path), text)


def check_syntax(text: str, where: str) -> None:
    """Compile the template as transformers does (a sandboxed Jinja environment)."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if not text.strip():
        raise ConfigError(f"{where}: the chat template is empty")
    try:
        ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).parse(text)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"{where}:{exc.lineno}: not a valid Jinja chat template ({exc.message})") from None


def apply(tokenizer, template: Template) -> None:
    """Put ``template`` on ``tokenizer``, with the eos_token it ends turns with, and check it
    renders a sample conversation (system, user, assistant) that keeps every message's text."""
    if template.end_of_turn and template.end_of_turn in tokenizer.get_vocab():
        tokenizer.eos_token = template.end_of_turn
    if tokenizer.eos_token is None:
        raise ConfigError(f"chat template {template.name}: the tokenizer has no eos_token to end turns with")
    tokenizer.chat_template = template.text
    try:
        text = tokenizer.apply_chat_template(SAMPLE, tokenize=False)
        tokenizer.apply_chat_template(SAMPLE[:2], tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 - any error inside a user's template is that template's fault
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{template.name}: the chat template fails on a sample conversation ({first})") from None
    missing = [m["role"] for m in SAMPLE if m["content"] not in text]
    if missing:
        raise ConfigError(f"{template.name}: the chat template drops the {missing[0]} message's text "
                          "(it must write every message's content)")


def current(tokenizer) -> str | None:
    """The chat template text a tokenizer carries (None: it has none)."""
    value = getattr(tokenizer, "chat_template", None)
    if isinstance(value, dict):  # several named templates: the default one is what chat uses
        value = value.get("default")
    return value or None


def describe(tokenizer, spec: str | None) -> dict:
    """What run.json records: the template's name (the model's own when ``spec`` is None) and
    the sha256 of its text, so a later load can tell whether it reads the same template."""
    text = current(tokenizer) or ""
    return {"name": spec or "model", "sha256": hashlib.sha256(text.encode()).hexdigest()}
