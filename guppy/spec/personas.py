"""Find a persona, load its YAML, validate it, and locate its templates.

Shared by both sides: the data side renders what it finds, the model side reads its associations.

Where things are found:
- PERSONA is a path to a YAML file, or a name: `personas/NAME.yaml` in the working
  directory, else the personas shipped with Guppy.
- A template path such as `guppy/food.jinja` resolves under the `templates/` folder
  beside that persona's `personas/` folder first, then under the shipped `templates/`,
  so a user's own persona can use the shipped `common/` topics.
- `common/` holds one set of shared topics per language (templates/common/en/, ja/, zh/, es/).
  A path under `common/` that names no set, `common/greeting.jinja` as in a topic or in an
  `{% import %}`, means the persona's language's set: `common/ja/greeting.jinja` for `ja-JP`.
  A path that names one, `common/es/greeting.jinja`, means that set whatever the language,
  and so do the unqualified imports of its templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from guppy.errors import GuppyError
from guppy.spec.language import SHARED_SETS, language_and_script, shared_set
from guppy.spec.persona import Persona
from guppy.store.paths import RunPaths

SHARED = "common"


def _shipped_root() -> Path:
    # A source checkout or editable install has personas/ beside guppy/; a wheel
    # carries them inside the package as guppy/_shipped/ (see pyproject.toml).
    here = Path(__file__).resolve().parents[1]  # guppy/
    for root in (here.parent, here / "_shipped"):
        if (root / "personas").is_dir() and (root / "templates").is_dir():
            return root
    raise RuntimeError(f"shipped personas not found near {here}")


SHIPPED = _shipped_root()


@dataclass(frozen=True)
class LoadedPersona:
    spec: Persona
    path: Path  # the YAML file
    template_dirs: tuple[Path, ...]  # searched in order
    source: str  # the YAML text, copied beside every dataset made from it

    @property
    def name(self) -> str:
        return self.spec.name

    def template_name(self, template: str) -> str:
        """The template path as found on disk: `common/x.jinja` -> `common/SET/x.jinja` (see the top)."""
        return shared_template(template, self.spec.language)

    def find_template(self, template: str) -> Path | None:
        name = self.template_name(template)
        return next((d / name for d in self.template_dirs if (d / name).is_file()), None)


def is_shared(template: str) -> bool:
    """Does this path mean the language's shared set (`common/x.jinja`, not `common/ja/x.jinja`)?"""
    parts = template.split("/")
    return len(parts) > 1 and parts[0] == SHARED and parts[1] not in SHARED_SETS


def within_set(template: str, parent: str) -> str:
    """`common/x.jinja` imported by a template of an explicit set (`common/es/y.jinja`) means that
    set's x, whatever the persona's language: a set's templates always use their own phrases."""
    parts = parent.split("/")
    if is_shared(template) and len(parts) > 2 and parts[0] == SHARED and parts[1] in SHARED_SETS:
        return f"{SHARED}/{parts[1]}/{template[len(SHARED) + 1:]}"
    return template


def shared_template(template: str, language: str) -> str:
    if not is_shared(template):
        return template
    chosen = shared_set(language)
    if chosen is None:
        raise GuppyError(f"{template}: {no_shared_set(language)}")
    return f"{SHARED}/{chosen}/{template[len(SHARED) + 1:]}"


def no_shared_set(language: str, name: str = "NAME") -> str:
    """Why common/ does not apply to this language, and what to do instead (one line)."""
    found = "-".join(language_and_script(language))
    sets = ", ".join("-".join(written) for written in SHARED_SETS.values())
    return (f"common/ has shared topics in {sets} only, not in language '{language}' ({found}): write these "
            f"topics as the persona's own templates (templates/{name}/TOPIC.jinja), or start from a persona in "
            f"that language: guppy persona new {name} --from PERSONA")


def persona_path(persona: str | Path) -> Path:
    """Resolve a persona name or a YAML path to an existing file."""
    text = str(persona)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
        if not path.is_file():
            what = "is not a regular file" if path.exists() else "persona file not found"
            raise GuppyError(f"{path}: {what}")
        return path
    for folder in (Path("personas"), SHIPPED / "personas"):
        path = folder / f"{text}.yaml"
        if path.is_file():
            return path
    known = ", ".join(list_personas()) or "none"
    raise GuppyError(f"unknown persona '{text}': no personas/{text}.yaml here or shipped (known: {known})")


def list_personas() -> list[str]:
    """Names of the personas in ./personas and the shipped ones (local first, no repeats)."""
    names: dict[str, None] = {}
    for folder in (Path("personas"), SHIPPED / "personas"):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            names.setdefault(path.stem)
    return list(names)


MAX_SPEC_BYTES = 5_000_000  # the shipped specs are ~20 KB
MAX_SPEC_VALUES = 1_000_000  # after YAML aliases are expanded (a "billion laughs" file is a few lines)


def read_spec_text(path: Path) -> str:
    """The YAML text of a persona file: a regular file of reasonable size, in UTF-8."""
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise GuppyError(f"{path}: {size:,} bytes; a persona spec may have at most {MAX_SPEC_BYTES:,}")
        data = path.read_bytes()
    except OSError as e:
        raise GuppyError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise GuppyError(f"{path}:{line}: not UTF-8 text (byte {data[e.start:e.start + 1]!r}); "
                         "save the file as UTF-8") from None


def check_expanded_size(raw, path: Path) -> None:
    """Refuse YAML whose aliases expand to an absurd number of values, or that contains itself:
    validating it would take hours, or never end."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise GuppyError(f"{path}: a YAML alias refers to a value that contains it; a spec cannot contain itself")
        busy.add(key)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_SPEC_VALUES:
                raise GuppyError(f"{path}: expands to more than {MAX_SPEC_VALUES:,} values (YAML aliases?); "
                                 "a persona spec is far smaller")
        busy.discard(key)
        sizes[key] = total
        return total

    try:
        size(raw)
    except RecursionError:
        raise GuppyError(f"{path}: nested too deeply to be a persona spec") from None


def _format_loc(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_persona(persona: str | Path) -> LoadedPersona:
    """Load and validate a persona; every problem becomes one line naming file and field."""
    path = persona_path(persona)
    source = read_spec_text(path)
    try:
        raw = yaml.safe_load(source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise GuppyError(f"{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise GuppyError(f"{path}: nested too deeply to be a persona spec") from None
    if not isinstance(raw, dict):
        raise GuppyError(f"{path}: expected a mapping of fields at the top level")
    check_expanded_size(raw, path)
    try:
        spec = Persona.model_validate(raw)
    except ValidationError as e:
        raise GuppyError(*(f"{path}: {_format_loc(err['loc'])}: {err['msg']}" for err in e.errors())) from None

    template_dirs = tuple(dict.fromkeys(d.resolve() for d in (path.parent.parent / "templates", SHIPPED / "templates")))
    shared = [name for name, topic in spec.topics.items() if is_shared(topic.template)]
    if shared and shared_set(spec.language) is None:
        raise GuppyError(f"{path}: topics {', '.join(shared[:3])}{' ...' if len(shared) > 3 else ''} use common/ "
                         f"templates, but {no_shared_set(spec.language, spec.name)}")
    loaded = LoadedPersona(spec=spec, path=path, template_dirs=template_dirs, source=source)
    missing = [
        f"{path}: topics.{name}.template: '{topic.template}' not found in "
        + " or ".join(str(d) for d in template_dirs)
        for name, topic in spec.topics.items()
        if loaded.find_template(topic.template) is None
    ]
    if missing:
        raise GuppyError(*missing)
    return loaded


# ---------------------------------------------------------------------------------- the persona of a run

def persona_name(persona: str) -> str:
    """A persona given by name or by YAML path -> its name (what names its run folder)."""
    if not str(persona).strip():
        raise GuppyError("the persona is empty; give a persona name or a YAML path")
    if str(persona).endswith((".yaml", ".yml")):
        return load_persona(persona).name
    return str(persona)


def persona_run(persona: str, run: Path | None = None) -> RunPaths:
    """The run folder of a persona given by name or by YAML path (only the name matters here)."""
    return RunPaths.for_persona(persona_name(persona), run)


def run_persona(persona: str, paths: RunPaths) -> Persona | None:
    """The persona spec a run was trained on (generate-data keeps it beside the data), else the one
    `persona` names now, else None (a model trained on someone else's data)."""
    try:
        return Persona.model_validate(yaml.safe_load((paths.trained_on() / "persona.yaml").read_text()))
    except (OSError, yaml.YAMLError, ValidationError):
        pass
    try:
        return load_persona(persona).spec
    except GuppyError:
        return None
