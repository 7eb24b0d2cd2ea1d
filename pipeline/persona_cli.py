"""`guppy persona ...`: create, inspect and check persona specs (cli.py adds it as a sub-app).
Each command is a thin call into pipeline/authoring.py or guppy/spec/personas.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from guppy.errors import GuppyError
from pipeline.cli_shared import PersonaArg, SeedOpt, console, err_console, new_app, print_warnings

persona_app = new_app("Create, inspect and check persona specs.")


@persona_app.command("new")
def persona_new(
    name: Annotated[str, typer.Argument(help="Name of the new persona (lowercase, e.g. otter).")],
    from_: Annotated[str, typer.Option("--from", help="Persona to copy as a starting point.")] = "guppy",
    blank: Annotated[bool, typer.Option("--blank", help="Write a documented blank skeleton instead of a copy: every pool the shared templates need, with notes, examples and TODOs.")] = False,
    language: Annotated[Optional[str], typer.Option("--language", help="BCP 47 tag of the language it speaks (en, zh, ja-JP, es-MX): picks the shared topics (templates/common/en, zh, ja, es) and the skeleton's language; with --from, replaces the copy's language.")] = None,
):
    """Scaffold personas/NAME.yaml and templates/NAME/, blank or from an existing persona."""
    from pipeline.authoring import new_persona

    path = new_persona(name, from_=from_, blank=blank, language=language)
    origin = "a blank skeleton; its TODOs say what to fill in" if blank else f"copied from {from_}"
    folder = f" and templates/{name}/" if Path("templates", name).is_dir() else ""
    console.print(f"created {path}{folder} ({origin}); it validates.")
    console.print(f"next: edit them, read [bold]guppy persona sample {name}[/], then [bold]guppy generate-data {name}[/]")


@persona_app.command("schema")
def persona_schema(
    out: Annotated[Path, typer.Option(help="Where to write the JSON Schema; '-' prints it.")] = Path("personas/persona.schema.json"),
):
    """Write the JSON Schema of a persona file (from the Pydantic models, with field descriptions) for editors."""
    import json

    from pipeline.authoring import persona_schema as schema, write_schema

    if str(out) == "-":
        print(json.dumps(schema(), indent=2))
        return
    write_schema(out)
    console.print(f"wrote {out}; a persona YAML whose first line is "
                  f"'# yaml-language-server: $schema={out.name}' is checked against it by editors that use the YAML language server.")


@persona_app.command("sample")
def persona_sample(
    persona: PersonaArg,
    topic: Annotated[Optional[str], typer.Option(help="Only this topic. Default: topics drawn by weight.")] = None,
    n: Annotated[int, typer.Option("-n", "--n", help="How many conversations to render.")] = 10,
    seed: SeedOpt = 0,
):
    """Print rendered conversations, with style violations marked inline and the template line behind each."""
    from rich.markup import escape

    from pipeline.authoring import persona_warnings, sample_persona

    loaded, samples = sample_persona(persona, topic=topic, n=n, seed=seed)
    print_warnings(persona_warnings(loaded))
    for s in samples:
        console.rule(f"{s.topic} #{s.index} [dim]({s.template})[/]", align="left")
        for turn, (role, content) in enumerate(s.conversation):
            text = escape(content)
            marks = [located for t, located in s.problems if t == turn]
            for located in marks:  # mark the offending words in the reply itself
                bad = escape(located.violation.text)
                if bad and bad in text:
                    text = text.replace(bad, f"[bold red underline]{bad}[/]", 1)
            console.print(f"[dim]{role}:[/] {text}" if role == "user" else f"[bold]{role}:[/] {text}", soft_wrap=True)
            for located in marks:
                console.print(f"  [red]^ {escape(str(located))}[/]", soft_wrap=True)
    broken = sum(1 for s in samples if s.problems)
    console.print(f"{len(samples)} conversations, {broken} with style violations"
                  + (f" (style: {loaded.path})" if broken else ""))


@persona_app.command("list")
def persona_list():
    """List the personas found here (./personas) and shipped with Guppy."""
    from guppy.spec.personas import list_personas, load_persona

    table = Table("persona", "topics", "associations", "description", "file")
    problems = []
    for name in list_personas():
        try:
            p = load_persona(name)
        except GuppyError as e:  # one bad file is reported, and hides none of the others
            table.add_row(name, "-", "-", "[red]invalid: run `guppy persona validate " + name + "`[/]", "")
            problems.append(e.problems[0])
            continue
        table.add_row(name, str(len(p.spec.topics)), str(len(p.spec.associations)), p.spec.identity.description, str(p.path))
    console.print(table)
    for problem in problems:
        err_console.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)


@persona_app.command("show")
def persona_show(persona: PersonaArg):
    """Show a persona's topics, pools, associations and how many distinct conversations each topic can make."""
    from pipeline.authoring import topic_capacity
    from guppy.spec.personas import load_persona

    p = load_persona(persona)
    spec = p.spec
    console.print(f"[bold]{spec.name}[/]: {spec.identity.description} (the user is {spec.identity.user}) — {p.path}")
    capacity = topic_capacity(p)
    table = Table("topic", "template", "weight", "unique in 400 renders", "≈ distinct it can make", title="topics")
    for name, topic in spec.topics.items():
        unique, est = capacity[name]
        table.add_row(name, topic.template, f"{topic.weight:g}", str(unique), f"{est:,.0f}" + ("+" if unique == 400 else ""))
    console.print(table)
    pools = Table("pool", "size", "examples", title="lexicon")
    for name, words in spec.lexicon.items():
        pools.add_row(name, str(len(words)), ", ".join(words[:4]) + (" …" if len(words) > 4 else ""))
    console.print(pools)
    assoc = Table("association", "kind", "expects", "topics", "probes", title="associations")
    for name, a in spec.associations.items():
        assoc.add_row(name, a.kind, ", ".join(a.expect), ", ".join(a.topics) or "all", str(len(a.probes)))
    console.print(assoc)


@persona_app.command("validate")
def persona_validate(
    persona: Annotated[Optional[str], typer.Argument(help="Persona name or YAML path. Default: every persona found.")] = None,
):
    """Check a persona: the spec, every template compiled, 200 conversations of each topic rendered and held to its style."""
    from pipeline.authoring import persona_warnings, validate_persona
    from guppy.spec.personas import list_personas

    problems = []
    for name in [persona] if persona is not None else list_personas():  # "" is load_persona's to refuse
        try:
            p = validate_persona(name)
            print_warnings(persona_warnings(p))
            console.print(f"[green]ok[/] {p.name}: {len(p.spec.topics)} topics, {p.path}")
        except GuppyError as e:
            problems.extend(e.problems)
    if problems:
        raise GuppyError(*problems)
