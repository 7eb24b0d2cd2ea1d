"""The render budget: what a template from a stranger may cost, enforced by the renderer.

Jinja's sandbox stops a template from reaching Python's internals, but not from spending the
machine: `range(10**9)`, `'a' * 10**10`, a loop inside a loop, a macro that calls itself. Per
conversation, a template gets:

    time        RenderBudget.seconds of wall time (SIGALRM; in the main thread of a process,
                which is where generate-data's renders run)
    size        RenderBudget.chars characters of output, and no value (string, list) larger:
                `*`, `**`, `%`, `+` and `~` are checked before they allocate, and so are the
                arguments of calls and filters (`'a'.ljust(10**9)`, `x|center(10**9)`, a join
                or replace whose result would be too large)
    recursion   Python's recursion limit (the renderer reports a RecursionError in one line)
    files       TemplateFolderLoader reads only regular UTF-8 files, of at most 1 MB, whose real
                path is inside one of the template folders: a link to ~/.ssh/id_rsa or /dev/zero
                is refused

A conversation is a few hundred characters and renders in ~50 µs, so the defaults are far
from anything a real template does. Going over raises BudgetExceeded, naming the limit.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import signal
import stat
import threading
from dataclasses import dataclass

import jinja2
from jinja2.compiler import CodeGenerator
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import _PassArg

from guppy.errors import GuppyError

MAX_TEMPLATE_BYTES = 1_000_000
# Filters whose result can be much larger than their input, or whose arguments count iterations;
# the others (lower, trim, first, length, ...) make at most what they are given.
GROWING_FILTERS = frozenset({"center", "indent", "format", "join", "replace", "slice", "batch", "wordwrap",
                             "truncate", "filesizeformat", "round"})
MAX_POWER_BITS = 65_536  # `**` results up to ~20,000 digits


@dataclass(frozen=True)
class RenderBudget:
    seconds: float = 2.0  # per conversation; a real one takes ~50 µs
    chars: int = 100_000  # per conversation, and per value made while rendering it; a real one is ~300


class BudgetExceeded(Exception):
    """A template went over its render budget; the message names the limit."""


# ---------------------------------------------------------------------------------- files

class TemplateFolderLoader(jinja2.FileSystemLoader):
    """Jinja's file loader, reading only regular UTF-8 files that really lie inside a template folder."""

    def __init__(self, searchpath, rename=lambda template: template):
        super().__init__(searchpath)
        self.rename = rename  # the persona's template_name: `common/x.jinja` -> its language's set

    def get_source(self, environment, template):
        pieces = split_template_path(self.rename(template))  # refuses '..'
        roots = [os.path.realpath(p) for p in self.searchpath]
        for searchpath in self.searchpath:
            filename = posixpath.join(searchpath, *pieces)
            if os.path.lexists(filename) and not os.path.isdir(filename):
                break
        else:
            return super().get_source(environment, template)  # its TemplateNotFound, with the paths searched
        real = os.path.realpath(filename)
        if not any(os.path.commonpath([root, real]) == root for root in roots):
            raise SecurityError(f"{filename} is a link to {real}, outside the template folders; "
                                "templates may read only files inside templates/")
        try:
            st = os.stat(real)
            if not stat.S_ISREG(st.st_mode):
                raise SecurityError(f"{filename} is not a regular file (a device, a pipe, ...); templates must be files")
            if st.st_size > MAX_TEMPLATE_BYTES:
                raise GuppyError(f"{filename}: {st.st_size:,} bytes; a template may have at most "
                                 f"{MAX_TEMPLATE_BYTES:,}")
            with open(real, "rb") as f:
                data = f.read(MAX_TEMPLATE_BYTES + 1)
        except OSError as e:
            raise GuppyError(f"{filename}: cannot be read ({e.strerror})") from None
        try:
            contents = data.decode(self.encoding)
        except UnicodeDecodeError as e:
            raise GuppyError(f"{filename}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                             "save it as UTF-8") from None
        mtime = st.st_mtime
        return contents, os.path.normpath(filename), lambda: os.path.exists(real) and os.path.getmtime(real) == mtime


# ---------------------------------------------------------------------------------- time

_deadline = {"active": False, "seconds": 0.0, "previous": signal.SIG_DFL, "pid": None}


def _ring(signum, frame):
    if _deadline["active"]:
        _deadline["active"] = False
        raise BudgetExceeded(f"more than {_deadline['seconds']:g} s for one conversation "
                             "(a loop too long, or one that never ends)")
    previous = _deadline["previous"]
    if callable(previous):  # an alarm that is not ours: pass it on
        previous(signum, frame)


def _arm(seconds: float) -> bool:
    """Start this render's clock; False where no alarm can be used (another thread, Windows)."""
    if seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    if _deadline["pid"] != os.getpid():  # once per process (getsignal costs more than a render's timer)
        previous = signal.signal(signal.SIGALRM, _ring)
        _deadline["previous"] = previous if previous is not _ring else _deadline["previous"]
        _deadline["pid"] = os.getpid()
    _deadline["seconds"], _deadline["active"] = seconds, True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return True


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)
    _deadline["active"] = False


# ---------------------------------------------------------------------------------- size

_PERCENT_SPEC = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:[^{}]*?(\d+)[^{}]*\}")


class BudgetCodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to the sandbox's checked join instead of a plain one."""

    def visit_Concat(self, node, frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every operation that can make a large value checked first."""

    code_generator_class = BudgetCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, budget: RenderBudget, **options):
        super().__init__(**options)
        self.budget = budget
        self.filters = {name: self._guarded_filter(name, f) if name in GROWING_FILTERS else f
                        for name, f in self.filters.items()}

    # -- what every check says
    def _too_large(self, what: str, size: int):
        return BudgetExceeded(f"{what} of {size:,}: over the budget of {self.budget.chars:,} characters or items "
                              "per conversation")

    def _sized(self, value):
        if isinstance(value, (str, list, tuple)) and len(value) > self.budget.chars:
            raise self._too_large("a value", len(value))
        return value

    def _check_ints(self, values) -> None:
        for v in values:
            if type(v) is int and abs(v) > self.budget.chars:
                raise self._too_large("an argument", v)
            if type(v) in (tuple, list) and len(v) <= 16:  # `'%*s' % (10**9, x)`
                self._check_ints(v)

    def _check_format(self, text: str) -> None:
        for spec in (*_PERCENT_SPEC.findall(text), *_BRACE_SPEC.findall(text)):
            for number in (spec if isinstance(spec, tuple) else (spec,)):
                if number and int(number) > self.budget.chars:
                    raise self._too_large("a format width", int(number))

    def _check_join_replace(self, name: str, s: str, args: tuple) -> None:
        if name == "join" and args and hasattr(args[0], "__len__"):
            estimate = len(s) * max(0, len(args[0]) - 1)
        elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            estimate = len(s) + (len(s) + 1 if not args[0] else len(s) // len(args[0])) * len(args[1])
        else:
            return
        if estimate > self.budget.chars:
            raise self._too_large(f"a {name}", estimate)

    # -- operators, calls, filters, ~
    def call_binop(self, context, operator, left, right):
        if operator == "*":
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > self.budget.chars:
                raise self._too_large("a repetition", len(seq) * times)
        elif operator == "**" and type(left) is int and type(right) is int and abs(left) > 1 and right > 0:
            if left.bit_length() * right > MAX_POWER_BITS:
                raise BudgetExceeded(f"{left} ** {right} has more than {MAX_POWER_BITS:,} bits")
        elif operator == "%" and isinstance(left, str):
            self._check_format(left)
            self._check_ints(right if isinstance(right, tuple) else (right,))
        return self._sized(super().call_binop(context, operator, left, right))

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's own signature)
        __self._check_ints((*args, *kwargs.values()))
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in ("format", "format_map"):
                __self._check_format(owner)
            __self._check_join_replace(name, owner, args)
        return __self._sized(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value):  # `'{:>9999999}'.format(x)`: the sandbox wraps str.format when it is looked up
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            self._check_format(value.__self__)
        return wrapped

    def _guarded_filter(self, name: str, f):
        passes = 1 if _PassArg.from_obj(f) is not None else 0  # environment / context / eval context first
        if name == "replace" and passes == 1:  # the templates' most used filter (~5 calls a render): kept quick

            @functools.wraps(f)
            def guarded_replace(eval_ctx, s, old, new, count=None):
                if type(s) is str and type(old) is str and type(new) is str and \
                        len(new) > len(old) and (len(s) + 1) * (len(new) + 1) > self.budget.chars:
                    self._check_join_replace("replace", s, (old, new))
                return f(eval_ctx, s, old, new, count)

            return guarded_replace

        @functools.wraps(f)
        def guarded(*args, **kwargs):
            value, rest = (args[passes], args[passes + 1:]) if len(args) > passes else (None, ())
            self._check_ints((*rest, *kwargs.values()))
            if isinstance(value, str):
                if name == "format":
                    self._check_format(value)
                self._check_join_replace(name, value, rest)
            elif name == "join" and hasattr(value, "__len__"):
                separator = rest[0] if rest else kwargs.get("d", "")
                if isinstance(separator, str):
                    self._check_join_replace("join", separator, (value,))
            return self._sized(f(*args, **kwargs))

        return guarded

    def concat(self, parts) -> str:
        """What Jinja joins a macro's, a {% set %} block's or a template's output with: sized first."""
        parts = list(parts)
        size = sum(map(len, parts))
        if size > self.budget.chars:
            raise self._too_large("output", size)
        return "".join(parts)

    def checked_concat(self, parts) -> str:
        parts = [str(p) for p in parts]
        size = sum(map(len, parts))
        if size > self.budget.chars:
            raise self._too_large("a ~ concatenation", size)
        return "".join(parts)

    # -- one render
    def render_within_budget(self, template: jinja2.Template) -> str:
        """template.render(), streamed so that the output is counted as it grows, under the clock."""
        context = template.new_context()
        armed = _arm(self.budget.seconds)
        try:
            try:
                # The chunks first, their total size before they are joined: a loop that yields one
                # 99,999-character string 100,000 times makes a list of references, not 10 GB.
                return self.concat(template.root_render_func(context))
            except Exception:
                self.handle_exception()  # re-raises with the template's own file and line (as render() does)
        finally:
            if armed:
                _disarm()
