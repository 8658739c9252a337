"""--device-map on the inference commands: auto places the model (here on the CPU, the only
device) and answers as before; anything else is a one-line usage error."""

from __future__ import annotations

from tests.helpers import run_cli


def test_chat_with_device_map_auto_answers_like_without(capsys, tiny_model):
    code, plain, err = run_cli(capsys, "chat", "--model", tiny_model, "--prompt", "Code word 3?", "--max-new-tokens", "5")
    assert code == 0, err
    code, mapped, err = run_cli(capsys, "chat", "--model", tiny_model, "--prompt", "Code word 3?",
                                "--max-new-tokens", "5", "--device-map", "auto")
    assert code == 0, err
    assert mapped == plain


def test_an_unknown_device_map_is_a_usage_error(capsys, tiny_model):
    for command in (["chat", "--model", tiny_model, "--prompt", "hi"], ["serve", "--model", tiny_model]):
        code, _, err = run_cli(capsys, *command, "--device-map", "gpu7")
        assert code == 2 and "--device-map 'gpu7'" in err and "Traceback" not in err
