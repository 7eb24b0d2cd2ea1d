"""Which lexicon pools a persona's templates use, and a one-line error for each one its YAML lacks.

A missing pool would otherwise surface mid-render as Jinja's "'dict object' has no attribute 'sounds'",
naming the template rather than the YAML field to add. The templates are read as text: each topic's
template and whatever it imports or includes, and every `lexicon.NAME` (or `lexicon["NAME"]`) in them.
A pool a template only tests with `lexicon.NAME is defined` is optional and not required.
"""

from __future__ import annotations

import re
from pathlib import Path

from guppy.errors import GuppyError
from guppy.spec.personas import SHIPPED, LoadedPersona, within_set

_USE = re.compile(r"""lexicon(?:\.(\w+)|\[\s*["'](\w+)["']\s*\])""")
_OPTIONAL = re.compile(r"""lexicon(?:\.(\w+)|\[\s*["'](\w+)["']\s*\])\s+is\s+defined""")
_DICT_NAMES = frozenset(dir(dict))
_LOADS = re.compile(r"""{%-?\s*(?:import|from|include|extends)\s+["']([^"']+)["']""")


def display_path(filename: str) -> str:
    """A file as a writer would type it: relative to the working directory when it is under it."""
    path = Path(filename).resolve()
    for root in (Path.cwd().resolve(), SHIPPED.resolve()):  # shipped: "templates/common/en/x.jinja"
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return filename


def pool_uses(persona: LoadedPersona) -> dict[str, list[str]]:
    """pool name -> ["templates/common/en/greeting.jinja:28", ...] for every pool the templates use."""
    uses: dict[str, list[str]] = {}
    optional: set[str] = set()
    todo = [t.template for t in persona.spec.topics.values()]
    seen: set[str] = set()
    while todo:
        name = todo.pop(0)
        path = persona.find_template(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        text = path.read_text(encoding="utf-8")
        todo += [within_set(loaded, name) for loaded in _LOADS.findall(text)]  # as the renderer's join_path
        optional |= {a or b for a, b in _OPTIONAL.findall(text)}
        for lineno, line in enumerate(text.splitlines(), 1):
            for a, b in _USE.findall(line):
                where = f"{display_path(str(path))}:{lineno}"
                if where not in uses.setdefault(a or b, []):
                    uses[a or b].append(where)
    # `lexicon.items` or `lexicon.__class__` is the dict itself (or a sandbox matter), not a pool
    return {pool: places for pool, places in uses.items()
            if pool not in optional and pool not in _DICT_NAMES and not pool.startswith("_")}


def check_pools(persona: LoadedPersona) -> None:
    """Raise one line per pool that the templates use and the YAML lacks."""
    missing = [
        f"{display_path(str(persona.path))}: lexicon.{pool} missing (used by {places[0]}"
        + (f" and {len(places) - 1} more" if len(places) > 1 else "") + ")"
        for pool, places in pool_uses(persona).items() if pool not in persona.spec.lexicon
    ]
    if missing:
        raise GuppyError(*missing)
