"""Every bad input ends in one line per problem naming the file and field or line,
exit code 2, no traceback, and nothing written."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from cli import app
from tests.conftest import FOOD, MINI_PERSONA, MOOD, write_persona

runner = CliRunner()


def spec_with(**changes) -> dict:
    spec = copy.deepcopy(MINI_PERSONA)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = spec
        for key in parents:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return spec


def generate(tmp_path, persona, *extra):
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate-data", str(persona), "--n", "200", "--out", str(out), *extra])
    return result, out


def assert_user_error(result, out, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert not out.exists()


CASES = {
    "unknown field": (spec_with(identity__mood="x"), None, ["mini.yaml", "identity.mood", "Extra inputs"]),
    "missing field": (spec_with(identity__user=None), None, ["mini.yaml", "identity.user", "required"]),
    "empty pool": (spec_with(lexicon__foods=[]), None, ["mini.yaml", "lexicon", "'foods' is empty"]),
    "non-positive weight": (spec_with(topics__food={"template": "mini/food.jinja", "weight": 0}), None,
                            ["mini.yaml", "topics.food.weight", "greater than 0"]),
    "missing template": (spec_with(topics__food={"template": "mini/nope.jinja"}), None,
                         ["mini.yaml", "topics.food.template", "mini/nope.jinja", "not found"]),
    "template syntax error": (None, {"mini/food.jinja": "user: {{ pick(lexicon.foods }}\nassistant: x",
                                     "mini/mood.jinja": MOOD}, ["food.jinja:1", "syntax error"]),
    "undefined variable": (None, {"mini/food.jinja": FOOD, "mini/mood.jinja": "user: hi\n\nassistant: {{ lexicon.moodz }}"},
                           ["mood.jinja:3", "moodz"]),
    "sandbox escape": (None, {"mini/food.jinja": FOOD,
                              "mini/mood.jinja": "user: hi\nassistant: {{ ''.__class__.__mro__[1].__subclasses__() }}"},
                       ["mood.jinja:2", "sandbox", "__class__"]),
    "sandbox escape through a dict": (None, {"mini/food.jinja": FOOD,
                                             "mini/mood.jinja": "user: hi\nassistant: {{ lexicon.__class__ }}"},
                                      ["mood.jinja:2", "sandbox", "__class__"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_persona_is_one_clear_line(tmp_path, case):
    spec, templates, needles = CASES[case]
    persona = write_persona(tmp_path, spec, templates)
    result, out = generate(tmp_path, persona)
    assert_user_error(result, out, *needles)


def test_malformed_yaml_names_file_and_line(tmp_path):
    persona = write_persona(tmp_path)
    persona.write_text("identity:\n  name: mini\n  description: [unclosed\n")
    result, out = generate(tmp_path, persona)
    assert_user_error(result, out, "mini.yaml:", "malformed YAML")


def test_n_smaller_than_topics_is_refused(tmp_path, mini):
    result = runner.invoke(app, ["generate-data", str(mini), "--n", "1", "--out", str(tmp_path / "o")])
    assert_user_error(result, tmp_path / "o", "--n 1", "number of topics (2)")


def test_existing_output_is_kept_unless_overwrite(tmp_path, mini):
    out = tmp_path / "out"
    args = ["generate-data", str(mini), "--n", "100", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    (out / "persona.yaml").write_text("the first one")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "persona.yaml").read_text() == "the first one"
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "persona.yaml").read_text() != "the first one" and (out / "dataset_dict.json").exists()


def test_unknown_persona_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["generate-data", "no_such_persona"])
    assert result.exit_code == 2 and "unknown persona 'no_such_persona'" in result.output


def test_validate_reports_template_errors(tmp_path):
    persona = write_persona(tmp_path, None, {"mini/food.jinja": FOOD, "mini/mood.jinja": "user: hi\nassistant: {{ nope }}"})
    result = runner.invoke(app, ["persona", "validate", str(persona)])
    assert result.exit_code == 2 and "mood.jinja:2" in result.output and "nope" in result.output


def test_a_crash_mid_write_leaves_nothing(tmp_path, mini, monkeypatch):
    import pipeline.generate as gen

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "write_card", boom)
    with pytest.raises(KeyboardInterrupt):
        gen.generate_data(persona=mini, n=100, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))


FAST_EXIT = """
import atexit, sys
sys.path.insert(0, {root!r})
import pipeline.cli_shared as shared
shared.used_cuda = lambda: True  # as after a command that ran on a GPU (CI has none)
atexit.register(lambda: print("atexit handlers ran", flush=True))


class Teardown:  # deleted when the interpreter tears its modules down, which leaving at once skips
    def __del__(self):
        print("torn down", flush=True)


kept = Teardown()
sys.argv = ["guppy", *{args!r}]
import cli
cli.main()
print("not reached: main leaves the process")
"""


@pytest.mark.parametrize("args, code", [(["persona", "list"], 0), (["persona", "show", "no-such-fish"], 2),
                                        (["persona", "show"], 2)])
def test_after_cuda_the_command_leaves_at_once_with_its_exit_code_and_all_its_output(tmp_path, args, code):
    """After CUDA, cli.main leaves through os._exit (CUDA's teardown took ~1 s on a GPU machine): the exit code
    (0, a GuppyError's 2, a usage error's 2), the output and the atexit handlers must all be as sys.exit's."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "fast_exit.py"
    script.write_text(FAST_EXIT.format(root=str(root), args=args))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == code, done.stderr[-2000:]
    assert "atexit handlers ran" in done.stdout and "not reached" not in done.stdout
    assert "torn down" not in done.stdout  # it left at once
    if code == 0:
        assert "guppy" in done.stdout  # the table of personas came out whole
    else:
        assert "Traceback" not in done.stderr and ("error" in done.stderr.lower() or "usage" in done.stderr.lower())


def test_under_a_profiler_the_command_exits_normally_so_the_profile_is_written(tmp_path):
    """`python -m cProfile -o FILE` writes FILE after the script returns; leaving at once would lose it. torch._dynamo
    imports cProfile on its own, so the check is whether a profiler runs, not whether cProfile was imported."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "fast_exit.py"
    script.write_text(FAST_EXIT.format(root=str(root), args=["persona", "list"]))
    prof = tmp_path / "out.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), str(script)], capture_output=True,
                          text=True, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert prof.stat().st_size > 0 and "torn down" in done.stdout
