"""Every number a user can type, every file Guppy reads, as a hostile user would give them: each
ends in one line naming what is wrong, exit code 2, no traceback, nothing written.

HOSTILE is the list of inputs tried (the issue's findings, then more of our own); each case builds
what it needs in tmp_path and returns the command line. `python -m pytest tests/test_hostile_inputs.py`
counts the tracebacks: the test fails on the first one."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from tests.conftest import MINI_PERSONA, write_persona

runner = CliRunner()


def spec(**changes) -> dict:
    """MINI_PERSONA with dotted__paths changed."""
    out = copy.deepcopy(MINI_PERSONA)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = out
        for key in parents:
            node = node[key]
        node[leaf] = value
    return out


def gen(persona: Path, tmp: Path, *extra) -> list[str]:
    return ["generate-data", str(persona), "--n", "100", "--num-proc", "1", "--out", str(tmp / "out"), *extra]


def with_spec(**changes):
    return lambda tmp: gen(write_persona(tmp, spec(**changes)), tmp)


def raw_yaml(text: str | bytes):
    def build(tmp):
        path = write_persona(tmp)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return gen(path, tmp)
    return build


def jsonl(body: bytes):
    def build(tmp):
        (tmp / "d.jsonl").write_bytes(body)
        return ["train", str(write_persona(tmp)), "--data", str(tmp / "d.jsonl"), "--out", str(tmp / "out")]
    return build


def checkpoint_with(**model):
    """A run folder whose checkpoint config.json claims an absurd model (a stranger's checkpoint)."""
    def build(tmp):
        folder = tmp / "run" / "ckpt" / "best"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"")
        base = dict(vocab_size=400, context=64, n_layer=2, n_head=2, d_model=64, d_ff=256)
        (folder / "config.json").write_text(json.dumps({"format": 1, "model": {**base, **model}, "tokenizer": "x",
                                                        "files": {}}))
        (folder / "tokenizer.json").write_text("{}")
        return ["chat", "mini", "--run", str(tmp / "run"), "--prompt", "hi"]
    return build


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

HOSTILE: dict[str, tuple] = {  # name -> (build(tmp) -> argv, words the one error line must contain)
    # numbers typed as options
    "generate --n -5": (lambda t: gen(write_persona(t), t, "--n", "-5"), "--n -5"),
    "generate --n 10**12": (lambda t: gen(write_persona(t), t, "--n", str(10**12)), "at most"),
    "generate --num-proc 0": (lambda t: gen(write_persona(t), t, "--num-proc", "0"), "--num-proc 0"),
    "generate --num-proc 100000": (lambda t: gen(write_persona(t), t, "--num-proc", "100000"), "--num-proc"),
    "generate --seed -1": (lambda t: gen(write_persona(t), t, "--seed", "-1"), "--seed -1"),
    "generate --seed 2**70": (lambda t: gen(write_persona(t), t, "--seed", str(2**70)), "--seed"),
    "generate --test-size nan": (lambda t: gen(write_persona(t), t, "--test-size", "nan"), "finite"),
    "generate --test-size 1": (lambda t: gen(write_persona(t), t, "--test-size", "1"), "--test-size"),
    "generate --format xml": (lambda t: gen(write_persona(t), t, "--format", "xml"), "--format"),
    "eval --samples -2": (lambda t: ["eval", str(write_persona(t)), "--run", str(t / "r"), "--samples", "-2"],
                          "--samples -2"),
    "eval --samples 0": (lambda t: ["eval", str(write_persona(t)), "--run", str(t / "r"), "--samples", "0"],
                         "--samples 0"),
    "compare --samples -1": (lambda t: ["compare", "guppy", "cat", "--samples", "-1", "--out", str(t / "c")],
                             "--samples"),
    "chat --temperature -1": (lambda t: ["chat", "mini", "--run", str(t), "--temperature", "-1"], "--temperature"),
    "chat --temperature nan": (lambda t: ["chat", "mini", "--run", str(t), "--temperature", "nan"], "finite"),
    "chat --temperature inf": (lambda t: ["chat", "mini", "--run", str(t), "--temperature", "inf"], "finite"),
    "chat --max-new-tokens 0": (lambda t: ["chat", "mini", "--run", str(t), "--max-new-tokens", "0"],
                                "--max-new-tokens 0"),
    "chat --top-k 0": (lambda t: ["chat", "mini", "--run", str(t), "--top-k", "0"], "--top-k 0"),
    "chat --top-p 0": (lambda t: ["chat", "mini", "--run", str(t), "--top-p", "0"], "--top-p 0"),
    "chat --seed -5": (lambda t: ["chat", "mini", "--run", str(t), "--seed", "-5"], "--seed -5"),
    "train --max-steps 0": (lambda t: ["train", "mini", "--out", str(t / "r"), "--max-steps", "0"], "max_steps"),
    "train --seed -1": (lambda t: ["train", "mini", "--out", str(t / "r"), "--seed", "-1"], "seed"),
    "train --preset NOSUCH": (lambda t: ["train", "mini", "--out", str(t / "r"), "--preset", "NOSUCH"],
                              "is not one of"),
    "train --device tpu": (lambda t: ["train", "mini", "--out", str(t / "r"), "--device", "tpu"], "device"),
    # numbers in a persona spec
    "weight .inf": (with_spec(topics__food={"template": "mini/food.jinja", "weight": float("inf")}),
                    "topics.food.weight"),
    "weight .nan": (with_spec(topics__food={"template": "mini/food.jinja", "weight": float("nan")}),
                    "topics.food.weight"),
    "weight 1e300": (with_spec(topics__food={"template": "mini/food.jinja", "weight": 1e300}), "topics.food.weight"),
    "max_reply_words 10**12": (with_spec(style__max_reply_words=10**12), "style.max_reply_words"),
    "an empty expected word": (with_spec(associations__food={"kind": "cue", "expect": [""], "topics": ["food"]}),
                               "associations.food.expect"),
    "an empty banned word": (with_spec(style__banned_words=["  "]), "style.banned_words"),
    "a name the filesystem cannot hold": (lambda t: (write_persona(t), (t / "personas" / "mini.yaml").write_text(
        yaml.safe_dump(spec(identity__name="a" * 300))), gen(t / "personas" / "mini.yaml", t))[2], "identity.name"),
    "a name with a slash": (with_spec(identity__name="../../etc"), "identity.name"),
    # files that are not what they claim
    "persona YAML in Latin-1": (raw_yaml("identity:\n  name: mini\n  description: caf\xe9\n".encode("latin-1")),
                                "not UTF-8"),
    "persona YAML billion laughs": (raw_yaml(BILLION_LAUGHS), "expands to more than"),
    "persona YAML that contains itself": (raw_yaml("a: &a [1, *a]\n"), "contains it"),
    "persona YAML nested 100000 deep": (raw_yaml("[" * 100_000 + "]" * 100_000), "mini.yaml"),
    "persona YAML of 6 MB": (raw_yaml("# " + "x" * 6_000_000 + "\n"), "at most"),
    "persona YAML that is a list": (raw_yaml("- 1\n- 2\n"), "mapping"),
    "persona path that is a folder": (lambda t: gen(t, t), "not a regular file"),
    "persona path that is a pipe": (lambda t: (os.mkfifo(t / "p.yaml"), gen(t / "p.yaml", t))[1],
                                    "not a regular file"),
    "JSONL in Latin-1": (jsonl('{"input": "caf\xe9", "output": "x"}\n'.encode("latin-1") * 50), "d.jsonl"),
    "JSONL that is not JSON": (jsonl(b"{not json\n" * 50), "d.jsonl"),
    "JSONL with a number for messages": (jsonl(b'{"messages": 5}\n' * 50), "d.jsonl"),
    "JSONL with no assistant turn": (jsonl(b'{"messages": [{"role": "user", "content": "hi"}]}\n' * 50), "d.jsonl"),
    "a checkpoint claiming 10**6 layers": (checkpoint_with(n_layer=10**6), "config.json"),
    "a checkpoint claiming a 10**9 vocabulary": (checkpoint_with(vocab_size=10**9), "config.json"),
    "a checkpoint with a NaN dropout": (checkpoint_with(dropout=float("nan")), "config.json"),
    "--prompt that is not UTF-8": (lambda t: ["chat", "mini", "--run", str(t), "--prompt", "caf\udce9"], "--prompt"),
    # paths that are in the way
    "--out under a file": (lambda t: ((t / "f").write_text("x"), gen(write_persona(t), t)[:-1] + [str(t / "f" / "o")])[1],
                           "Not a directory"),
    "--out in a symlink loop": (lambda t: (os.symlink(t / "l", t / "l"), gen(write_persona(t), t)[:-1]
                                           + [str(t / "l" / "o")])[1], "symbolic links"),
    "--out that is a file, with --overwrite": (lambda t: ((t / "out").write_text("mine"),
                                                          gen(write_persona(t), t, "--overwrite"))[1], "is a file"),
    "train --data that is a folder of nothing": (lambda t: ((t / "empty").mkdir(), ["train", "mini", "--data",
                                                 str(t / "empty"), "--out", str(t / "r")])[1], "no dataset found"),
    "train --data /dev/zero": (lambda t: ["train", "mini", "--data", "/dev/zero", "--out", str(t / "r")], "/dev/zero"),
    "export --out a home folder": (lambda t: ((t / ".bashrc").write_text("x"), ["export", "mini", "--run", str(t / "r"),
                                    "--out", str(t), "--overwrite"])[1], "not a folder Guppy made"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_one_line_exit_2(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    build, needle = HOSTILE[case]
    argv = build(tmp_path)
    result = runner.invoke(app, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        pytest.fail(f"{case}: traceback\n" + "".join(traceback.format_exception(result.exception)))
    assert result.exit_code == 2, f"{case}: exit {result.exit_code}\n{result.output}"
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) >= 1 and needle in " ".join(lines), f"{case}:\n{result.output}"
    assert len(lines) <= 3, result.output  # one line per problem, and few problems
    assert not (tmp_path / "out").is_dir() or case.startswith("--out")


def test_one_bad_yaml_does_not_hide_the_persona_list(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_persona(tmp_path)
    (tmp_path / "personas" / "broken.yaml").write_text("identity: [unclosed\n")
    result = runner.invoke(app, ["persona", "list"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "mini" in result.output and "guppy" in result.output and "broken" in result.output
    assert "malformed YAML" in result.output


def test_a_persona_spec_with_aliases_within_reason_still_loads(tmp_path):
    from guppy.spec.personas import load_persona

    path = write_persona(tmp_path)
    text = yaml.safe_dump(MINI_PERSONA, sort_keys=False).replace("  foods:\n", "  foods: &foods\n", 1)
    text = text.replace("topics:\n", "  snacks: *foods\ntopics:\n", 1)  # the same pool under a second name
    path.write_text(text)
    lexicon = load_persona(path).spec.lexicon
    assert lexicon["snacks"] == lexicon["foods"] == MINI_PERSONA["lexicon"]["foods"]
