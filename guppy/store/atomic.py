"""Write a folder or a file so that a crash or Ctrl-C never leaves half of it, and replace
only what Guppy made itself.

- Everything is written under a temporary name beside the target (`.NAME.tmp-PID`) and renamed
  into place at the end; `os.replace` of a file is atomic, and a folder is swapped in with two
  renames (the old one goes to `.NAME.old-PID` for that instant).
- `check_replaceable` is the one place that decides whether an existing path may be replaced:
  only a folder Guppy made (its `.guppy.json` marker, or the known layout of a folder of that kind
  made before markers existed), or an empty folder. Never a file, a device, a link or a
  stranger's folder.
- `output_lock` (guppy/store/locks.py) refuses a second process writing the same output (one line, exit 2).
- Leftovers of a process that died (`.NAME.tmp-PID`, `.NAME.old-PID`, `.NAME.fresh-PID`) are
  cleaned up the next time the same output is written; an `.old-PID` whose target is missing
  is the previous result that a rename did not put back, so it is restored instead.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from guppy.errors import GuppyError
from guppy.store.locks import cannot_write, output_lock  # noqa: F401 (output_lock: part of this module's API)

MARKER = ".guppy.json"  # written into every folder Guppy makes: {"guppy": KIND}

# Folders made before the marker existed are recognized by their layout: every entry is one
# Guppy writes in a folder of that kind, and the ones that identify it are there.
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
LAYOUTS: dict[str, tuple[set[str], set[str]]] = {  # kind -> (must have, may have)
    "dataset": ({"README.md", "persona.yaml"}, {"dataset_dict.json", "train", "test", "data"}),
    "tokenizer": ({"tokenizer.json"}, TOKENIZER_FILES),
    "checkpoint": ({"config.json", "model.safetensors"},
                   TOKENIZER_FILES | {"trainer_state.safetensors", "trainer_state.json"}),
    "eval": ({"report.json"}, {"report.md", "associations.png", "loss.png"}),
    "compare": ({"matrix.json"}, {"matrix.png"}),
    "hf": ({"config.json", "model.safetensors"}, TOKENIZER_FILES | {"generation_config.json", "README.md"}),
    "hf-dataset": ({"README.md", "data", "persona.yaml"}, set()),
    "inspect": ({"inspect.json"}, {"inspect.md", "attention_grid.png", "persona_word.png"}),
    "onnx": ({"model.onnx"}, {"model.int8.onnx"} | TOKENIZER_FILES),
    "web": ({"index.html", "app.js", "guppy.json", "vendor"}, {"style.css", "model.onnx", "model.int8.onnx"}
            | TOKENIZER_FILES),  # an index.html alone is anyone's page
    "gguf": ({"Modelfile", "guppy.json"}, set()),
    "run": (set(), {"data", "tokenizer", "ckpt", "train_config.json", "metrics.jsonl", "loss.png", "eval", "hf",
                    "hf-dataset", "inspect", "onnx", "web", "gguf", "screenshots"}),
}
# Files Guppy writes where a user points it (`guppy runs --out`, `guppy persona schema --out`) are
# replaced only when Guppy wrote them: a chart says so in its PNG Software text chunk (savefig(...,
# metadata=CHART_METADATA)), a persona schema by its title.
CHART_METADATA = {"Software": "guppy"}


def _our_schema(data: bytes) -> bool:
    try:
        return json.loads(data).get("title") == "Guppy persona"
    except (ValueError, AttributeError):
        return False


FILE_KINDS = {  # kind -> does this content say Guppy wrote it?
    "chart": lambda data: data.startswith(b"\x89PNG\r\n\x1a\n") and b"tEXtSoftware\x00guppy" in data[:4096],
    "schema": _our_schema,
}
# Our own hidden entries beside or inside an output: the marker, locks, leftovers of a write.
_OURS_HIDDEN = re.compile(r"^(\.guppy\.json|\..+\.lock|\..+\.(tmp|old|fresh)-\d+)$")
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|old|fresh)-(?P<pid>\d+)$")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG,
                 errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EXDEV, errno.EBUSY, errno.ENOENT}


# ---------------------------------------------------------------------------------- may it be replaced?

def _kind_of_marker(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("guppy")
    except (OSError, ValueError, AttributeError):
        return None


def is_ours(folder: Path, kind: str) -> bool:
    """Did Guppy make this folder, as a folder of `kind`? (By its marker, else by its layout.)"""
    marked = _kind_of_marker(folder)
    if marked is not None:
        return marked == kind
    must, may = LAYOUTS[kind]
    names = {p.name for p in folder.iterdir() if not _OURS_HIDDEN.match(p.name)}
    return must <= names and names <= must | may and (bool(names) or kind == "run")


def is_our_file(path: Path, kind: str) -> bool:
    """Did Guppy write this file, as a file of `kind`? (What its content says; a file over 16 MB is no
    chart or schema of ours.)"""
    try:
        if os.path.getsize(path) > 16 << 20:
            return False
        return FILE_KINDS[kind](Path(path).read_bytes())
    except OSError:
        return False


def _check_file(target: Path, st: os.stat_result, kind: str) -> None:
    if stat.S_ISREG(st.st_mode) and is_our_file(target, kind):
        return
    what = "a folder" if stat.S_ISDIR(st.st_mode) else \
        "a file Guppy did not write" if stat.S_ISREG(st.st_mode) else "not a regular file (a device, a pipe, ...)"
    raise GuppyError(f"{target}: is {what}; Guppy will not replace it, choose another output path")


def check_replaceable(target: Path, kind: str, *, overwrite: bool = True) -> None:
    """Refuse, in one line, to replace anything at `target` that is not a folder Guppy made as `kind`
    (or an empty folder): a file, a device, a symbolic link, another kind of output, a stranger's folder."""
    target = Path(target)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as e:  # a parent that is a file, a loop of links, a name too long, ...
        if e.errno in (errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EACCES):
            raise cannot_write(target, e) from None
        raise
    if stat.S_ISLNK(st.st_mode):
        raise GuppyError(f"{target}: is a symbolic link; Guppy does not replace links, give the real folder "
                         "or a new path")
    if kind in FILE_KINDS:
        return _check_file(target, st, kind)
    if not stat.S_ISDIR(st.st_mode):
        what = "a file" if stat.S_ISREG(st.st_mode) else "not a regular file or folder (a device, a pipe, ...)"
        raise GuppyError(f"{target}: is {what}, not a folder Guppy made; Guppy will not replace it, "
                         "choose another output path")
    try:
        entries = [p.name for p in target.iterdir() if not _OURS_HIDDEN.match(p.name)]
        ours = is_ours(target, kind)
    except OSError as e:
        raise cannot_write(target, e) from None
    if not entries and kind != "run" and _kind_of_marker(target) in (None, kind):
        ours = True  # an empty folder: nothing to lose
    if not ours:
        marked = _kind_of_marker(target)
        what = f"a Guppy {marked} folder, not a {kind} folder" if marked else \
            f"not a folder Guppy made (it holds {', '.join(sorted(entries)[:3])}{' ...' if len(entries) > 3 else ''})"
        raise GuppyError(f"{target}: is {what}; Guppy replaces only its own outputs, choose another output path")
    if not overwrite and kind != "run":
        raise GuppyError(f"{target}: already exists; pass --overwrite to replace it")


def check_output(target: Path, kind: str, *, overwrite: bool = True) -> None:
    """Everything that can be said about an output before any work: may it be replaced, and is
    nothing in its way (a parent that is a file, a name too long for the filesystem)."""
    target = Path(target)
    check_replaceable(target, kind, overwrite=overwrite)
    for parent in target.absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise GuppyError(f"{parent}: is not a folder, so {target} cannot be written there")
            break
    for part in target.absolute().parts:
        if len(os.fsencode(part)) > 255 - 24:  # 255 bytes is the usual limit; leave room for .tmp-PID
            raise GuppyError(f"{target}: the name {part[:40]!r}... is too long for the filesystem")


def write_marker(folder: Path, kind: str) -> None:
    (Path(folder) / MARKER).write_text(json.dumps({"guppy": kind}) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------- leftovers

def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_leftovers(target: Path) -> list[Path]:
    """Remove what dead processes left beside `target` while writing it; put back an old result
    that a rename did not. Returns what was removed or restored."""
    target = Path(target)
    try:
        siblings = list(target.parent.iterdir()) if target.parent.is_dir() else []
    except OSError:
        return []
    done = []
    for path in sorted(siblings, key=lambda p: p.name):
        m = _LEFTOVER.match(path.name)
        if not m or m["name"] != target.name or _alive(int(m["pid"])):
            continue
        if m["what"] == "old" and not os.path.lexists(target):
            os.replace(path, target)  # the previous result, which its swap did not finish putting back
        else:
            _remove(path)
        done.append(path)
    return done


def owner_pid() -> int:
    """The pid that names a temporary sibling: this process's, or under torchrun the launcher's,
    so that every rank names the same folder (the launcher outlives its ranks)."""
    return os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ else os.getpid()


# ---------------------------------------------------------------------------------- writing

def swap_in(pairs: list[tuple[Path, Path]]) -> None:
    """Put each new folder or file (tmp) in place of its target, old ones aside first: the targets
    change within a few renames of each other, and the old ones are removed only after."""
    olds = []
    try:
        for tmp, target in pairs:
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            if os.path.lexists(target):
                os.replace(target, old)
                olds.append((old, target))
        for tmp, target in pairs:
            os.replace(tmp, target)
    except OSError as e:
        for old, target in olds:  # put back what was there
            if not os.path.lexists(target):
                os.replace(old, target)
        raise cannot_write(pairs[0][1], e) from None
    for old, _ in olds:
        _remove(old)


@contextmanager
def atomic_dirs(targets: list[tuple[Path, str]], *, overwrite: bool = False) -> Iterator[list[Path]]:
    """Yield one empty temporary folder per (target, kind); when the block ends without error, they
    replace the targets together. On any error or Ctrl-C the temporary folders are removed and
    the targets are as they were."""
    targets = [(Path(t), kind) for t, kind in targets]
    with ExitStack() as stack:
        for target, kind in targets:
            stack.enter_context(output_lock(target))
            clean_leftovers(target)
            check_output(target, kind, overwrite=overwrite)
        tmps = []
        try:
            for target, kind in targets:
                tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
                target.parent.mkdir(parents=True, exist_ok=True)
                _remove(tmp)
                tmp.mkdir()
                tmps.append(tmp)
                write_marker(tmp, kind)
            yield tmps
            for target, kind in targets:  # again: something may have appeared there meanwhile
                check_replaceable(target, kind, overwrite=True)
            swap_in(list(zip(tmps, [t for t, _ in targets])))
        except BaseException as e:  # KeyboardInterrupt too: nothing half-written stays behind
            for tmp in tmps:
                _remove(tmp)
            if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
                raise cannot_write(targets[0][0], e) from None
            raise


@contextmanager
def atomic_dir(target: Path, *, kind: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes `target` (a Guppy folder of `kind`) when the
    block ends without error; refused if `target` is there and is not one of ours."""
    with atomic_dirs([(target, kind)], overwrite=overwrite) as (tmp,):
        yield tmp


@contextmanager
def atomic_file(target: Path, *, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary path; it replaces `target` (never a link, a folder or a device; with `kind`, only
    a file Guppy wrote as that kind) when the block ends without error."""
    target = Path(target)
    if kind is not None:
        check_output(target, kind)
    if os.path.lexists(target) and not (target.is_file() and not target.is_symlink()):
        raise GuppyError(f"{target}: is not a regular file; Guppy will not replace it")
    clean_leftovers(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, target)
    except OSError as e:
        if e.errno in _WRITE_ERRNOS:
            raise cannot_write(target, e) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
