"""A persona folder from a stranger: its templates cannot read files outside templates/, cannot
change the lexicon, and cannot spend the machine. Each runaway template ends in one line naming
the template and the limit it hit, quickly. (Plain pytest: CI runs these.)"""

from __future__ import annotations

import os
import time

import pytest
from typer.testing import CliRunner

from cli import app
from guppy.errors import GuppyError
from pipeline.budget import RenderBudget
from guppy.spec.personas import load_persona
from pipeline.render import Renderer
from tests.conftest import FOOD, MINI_PERSONA, MOOD, one_line_error, write_persona

runner = CliRunner()
SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- not for the dataset"


def renderer_for(tmp_path, mood: str, extra: dict[str, str] | None = None, seconds: float = 0.5) -> Renderer:
    persona = write_persona(tmp_path, None, {"mini/food.jinja": FOOD, "mini/mood.jinja": mood, **(extra or {})})
    return Renderer(load_persona(persona), seed=0, budget=RenderBudget(seconds=seconds))


# ---------------------------------------------------------------------------------- files

def test_an_include_through_a_link_out_of_templates_is_refused(tmp_path):
    secret = tmp_path / "home" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    persona = write_persona(tmp_path, None, {"mini/food.jinja": FOOD,
                                             "mini/mood.jinja": "user: hi\nassistant: {% include 'mini/leak.txt' %}"})
    os.symlink(secret, tmp_path / "templates" / "mini" / "leak.txt")
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate-data", str(persona), "--n", "100", "--out", str(out), "--num-proc", "1"])
    one_line_error(result, "leak.txt", "outside the template folders")
    assert SECRET not in result.output and not out.exists()


def test_a_topic_template_that_is_a_link_out_of_templates_is_refused(tmp_path):
    secret = tmp_path / "secret.jinja"
    secret.write_text("user: hi\nassistant: " + SECRET)
    persona = write_persona(tmp_path)
    (tmp_path / "templates" / "mini" / "mood.jinja").unlink()
    os.symlink(secret, tmp_path / "templates" / "mini" / "mood.jinja")
    with pytest.raises(GuppyError, match="outside the template folders") as e:
        Renderer(load_persona(persona), seed=0)
    assert SECRET not in str(e.value)


def test_a_link_to_a_device_is_not_read(tmp_path):
    persona = write_persona(tmp_path, None, {"mini/food.jinja": FOOD,
                                             "mini/mood.jinja": "user: hi\nassistant: {% include 'mini/zero.txt' %}"})
    os.symlink("/dev/zero", tmp_path / "templates" / "mini" / "zero.txt")
    started = time.perf_counter()
    with pytest.raises(GuppyError, match="zero.txt"):
        Renderer(load_persona(persona), seed=0).render("mood", 0)
    assert time.perf_counter() - started < 5


def test_a_link_that_stays_inside_templates_still_works(tmp_path):
    r = renderer_for(tmp_path, "user: hi\nassistant: {% include 'mini/shared.txt' %}")
    (tmp_path / "templates" / "common").mkdir()
    (tmp_path / "templates" / "common" / "shared.txt").write_text("blub blub.")
    os.symlink(tmp_path / "templates" / "common" / "shared.txt", tmp_path / "templates" / "mini" / "shared.txt")
    assert r.render("mood", 0) == (("user", "hi"), ("assistant", "blub blub."))


def test_a_template_that_is_not_utf8_is_one_line(tmp_path):
    persona = write_persona(tmp_path)
    (tmp_path / "templates" / "mini" / "mood.jinja").write_bytes(b"user: hi\nassistant: caf\xe9\n")
    result = runner.invoke(app, ["generate-data", str(persona), "--n", "100", "--out", str(tmp_path / "o")])
    one_line_error(result, "mood.jinja", "not UTF-8")


# ---------------------------------------------------------------------------------- the lexicon

@pytest.mark.parametrize("mutation", ["lexicon.foods.append('rocks')", "lexicon.update({'foods': []})",
                                      "lexicon.foods.pop()", "persona.update({'name': 'x'})",
                                      "lexicon.foods.sort()"])
def test_templates_cannot_change_the_shared_lexicon(tmp_path, mutation):
    r = renderer_for(tmp_path, "user: hi\nassistant: {{ " + mutation + " }} ok.")
    before = {k: list(v) for k, v in r.persona.spec.lexicon.items()}
    with pytest.raises(GuppyError, match=r"mood.jinja:2: blocked by the sandbox"):
        r.render("mood", 0)
    assert {k: list(v) for k, v in r.persona.spec.lexicon.items()} == before


# ---------------------------------------------------------------------------------- the budget

RUNAWAY = {  # template body -> the limit its one-line error must name
    "range(10**9)": ("{% for i in range(10**9) %}x{% endfor %}", "an argument of 1,000,000,000"),
    "'a' * 10**10": ("{{ 'a' * 10**10 }}", "a repetition of 10,000,000,000"),
    "a pool * 10**9": ("{{ lexicon.foods * 10**9 }}", "a repetition"),
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
                     "more than 0.5 s for one conversation"),
    "a loop that outputs forever": ("{% set s = 'a' * 99999 %}{% for i in range(100000) %}{{ s }}{% endfor %}",
                                    "output of"),
    "a macro that outputs forever": ("{% set s = 'a' * 99999 %}{% macro m() %}{% for i in range(100000) %}{{ s }}"
                                     "{% endfor %}{% endmacro %}{{ m() }}", "output of"),
    "a set block that outputs forever": ("{% set s = 'a' * 99999 %}{% set big %}{% for i in range(100000) %}{{ s }}"
                                         "{% endfor %}{% endset %}{{ big }}", "output of"),
    "doubling with ~": ("{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s }}", "a ~ concatenation"),
    "str.ljust(10**9)": ("{{ 'a'.ljust(10**9) }}", "an argument"),
    "center filter": ("{{ 'a'|center(10**9) }}", "an argument"),
    "% width": ("{{ '%999999999s' % 'x' }}", "a format width"),
    "str.format width": ("{{ '{:>999999999}'.format('x') }}", "a format width"),
    "format filter width": ("{{ '%999999999s'|format('x') }}", "a format width"),
    "join with a huge separator": ("{{ range(100000)|join('x' * 99999) }}", "a join"),
    "replace that explodes": ("{{ ('a' * 90000).replace('', 'bbbbb') }}", "a replace"),
    "a huge power": ("{{ 7 ** 100000 }}", "bits"),
    "deep macro recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
}


@pytest.mark.parametrize("case", list(RUNAWAY))
def test_a_runaway_template_ends_in_one_line_naming_the_limit(tmp_path, case):
    body, limit = RUNAWAY[case]
    r = renderer_for(tmp_path, "user: hi\nassistant: " + body)
    started = time.perf_counter()
    with pytest.raises(GuppyError) as e:
        r.render("mood", 0)
    message = str(e.value)
    assert "\n" not in message and "mood.jinja" in message and limit in message, message
    assert "over the render budget" in message
    assert time.perf_counter() - started < 5


def test_a_template_that_includes_itself_is_stopped(tmp_path):
    r = renderer_for(tmp_path, "user: hi\nassistant: x {% include 'mini/mood.jinja' %}")
    with pytest.raises(GuppyError, match="mood.jinja: over the render budget: recursion"):
        r.render("mood", 0)


def test_the_budget_holds_in_worker_processes_too(tmp_path):
    persona = write_persona(tmp_path, None, {"mini/food.jinja": FOOD,
                                             "mini/mood.jinja": "user: hi\nassistant: {{ 'a' * 10**10 }}"})
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate-data", str(persona), "--n", "200", "--out", str(out), "--num-proc", "2"])
    one_line_error(result, "mood.jinja", "over the render budget", "a repetition")
    assert not out.exists()


def test_any_exception_a_template_raises_is_one_line(tmp_path):
    r = renderer_for(tmp_path, "user: hi\nassistant: {{ 1 / 0 }}")
    with pytest.raises(GuppyError, match=r"mood.jinja:2: ZeroDivisionError"):
        r.render("mood", 0)


@pytest.mark.parametrize("persona", ["guppy", "kingyo", "mini"])
def test_real_templates_are_far_inside_the_budget(tmp_path, persona):
    """Every topic of the shipped personas renders within a budget 20x tighter than the product's in time
    and 30x in characters: the limits catch runaways, never a real template. (100x in time, 0.02 s, failed once
    in a full suite on 2 busy cores: a first render compiles its templates, and a pause of the machine counts.)"""
    default = RenderBudget()
    tight = RenderBudget(seconds=default.seconds / 20, chars=default.chars // 30)
    loaded = load_persona(write_persona(tmp_path) if persona == "mini" else persona)
    r = Renderer(loaded, seed=0, budget=tight)
    for topic in loaded.spec.topics:
        for i in range(40):
            assert r.render(topic, i), (topic, i)
