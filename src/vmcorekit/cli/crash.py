"""`vmcorekit crash DUMP`: one session over one dump, like crash's prompt.

The dump is opened once; every verb is the standalone command of the same name (`bt -a` in
the session runs `vmcorekit bt DUMP -a`, the same code, the same output) with the session's
Program lent to it. Around the verbs the session adds crash's conveniences:

    crash> bt -a | grep -c '#'          a verb's output through a shell command
    crash> log > /tmp/log.txt           ... into a file (>> appends)
    crash> !uname -r                    a shell command
    crash> set 1                        the current task for bt and task
    crash> help, help VERB, q

On a terminal: history (kept 0600 under $XDG_STATE_HOME/vmcorekit), tab completion of verbs,
symbols, struct and member names (`struct task_struct.<TAB>`), long output through $PAGER.
From `-i FILE` or a non-terminal stdin the lines are a script; an error prints one line and
the script goes on, unless --strict, which stops there with the verb's exit status.
"""
from __future__ import annotations

import bisect
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

from ..util.text import printable
from .common import Session, current_session, dump_arguments, enter_session, open_program

if TYPE_CHECKING:
    from ..program import Program

PROMPT = "crash> "
QUIT = frozenset({"q", "quit", "exit"})
# crash's names for verbs vmcorekit spells otherwise.
ALIASES = {"union": "struct"}
# Commands that are not verbs of a session: they need no dump, or are a session themselves.
NOT_VERBS = frozenset({"crash"})
MAX_LINE = 64 * 1024
MAX_COMPLETIONS = 200
HISTORY_LINES = 10_000


# -- the verbs ----------------------------------------------------------------------------------
def verbs() -> dict[str, click.Command]:
    """Every command of `vmcorekit` that takes a DUMP argument, by name."""
    from .main import cli
    out: dict[str, click.Command] = {}
    with click.Context(cli) as ctx:
        for name in cli.list_commands(ctx):
            if name in NOT_VERBS:
                continue
            cmd = cli.get_command(ctx, name)
            if cmd is not None and any(isinstance(p, click.Argument) and p.name == "dump" for p in cmd.params):
                out[name] = cmd
    return out


def _error(msg: str) -> None:
    click.echo(printable(f"vmcorekit: error: {msg}"), err=True)


# -- one line: words, then `| cmd` or `> file` ----------------------------------------------------
def split_line(line: str) -> tuple[str, str | None, str | None, bool]:
    """(command, shell command after an unquoted `|` or None, file after `>`/`>>` or None,
    append). A `>` right after `-` is C's `->`, not a redirection."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                continue
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "|":
            pipe = line[i + 1:].strip()
            if not pipe:
                raise click.UsageError("'|' needs a command after it")
            return line[:i].strip(), pipe, None, False
        elif ch == ">" and (i == 0 or line[i - 1] != "-"):
            append = line[i + 1:i + 2] == ">"
            rest = line[i + (2 if append else 1):]
            words = shlex.split(rest)
            if len(words) != 1:
                raise click.UsageError("'>' needs one file name after it")
            return line[:i].strip(), None, words[0], append
    return line.strip(), None, None, False


def _open_target(path: str, append: bool) -> int:
    """The file descriptor `> path` writes to: a regular file (created 0600), never a device,
    FIFO or folder, also not behind a symlink."""
    from ..errors import OutputError
    from ..util.fileout import check_output_path
    check_output_path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        raise OutputError(f"{path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a device meanwhile
        os.close(fd)
        raise OutputError(f"{path}: not a regular file; refusing to write to it")
    return fd


class _Stdout:
    """Point fd 1 (and so click, print and rich) at another file for one verb."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved = -1

    def __enter__(self) -> None:
        sys.stdout.flush()
        self.saved = os.dup(1)
        os.dup2(self.fd, 1)

    def __exit__(self, *exc: object) -> None:
        try:
            sys.stdout.flush()
        except OSError:
            pass  # the reader went away (`| head`): not an error
        os.dup2(self.saved, 1)
        os.close(self.saved)


def _page(data: bytes) -> None:
    """Show a verb's output: through $PAGER when longer than the terminal, else as it is."""
    import shutil
    cols, rows = shutil.get_terminal_size((80, 24))
    lines = sum(max(1, -(-len(ln) // max(cols, 1))) for ln in data.split(b"\n")[:-1] or [b""])
    argv = shlex.split(os.environ.get("PAGER") or "less -FRX")
    if lines < rows - 1 or not argv or shutil.which(argv[0]) is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    try:
        subprocess.run(argv, input=data, env=env, check=False)
    except OSError as e:
        _error(f"pager {argv[0]}: {e.strerror or e}")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


class Runner:
    """Runs the lines of a session against one open dump."""

    def __init__(self, session: Session, *, page: bool, strict: bool, echo: bool) -> None:
        self.session = session
        self.page = page
        self.strict = strict
        self.echo = echo
        self._verbs: dict[str, click.Command] | None = None

    @property
    def verbs(self) -> dict[str, click.Command]:
        if self._verbs is None:
            self._verbs = verbs()
        return self._verbs

    # -- one line -----------------------------------------------------------------------------
    def run_line(self, line: str) -> int | None:
        """Run one line; its status (0 ok, 1 error, 2 usage, 3 partial) or None to quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return 0
        if len(line) > MAX_LINE:
            _error(f"line longer than {MAX_LINE} characters")
            return 2
        if self.echo:
            click.echo(printable(PROMPT + line))
        if line.startswith("!"):
            sys.stdout.flush()
            return subprocess.run(line[1:].strip() or os.environ.get("SHELL", "/bin/sh"), shell=True,
                                  check=False).returncode and 1
        try:
            cmd, pipe, target, append = split_line(line)
            words = shlex.split(cmd)
        except (click.UsageError, ValueError) as e:
            _error(e.format_message() if isinstance(e, click.UsageError) else f"cannot split the line: {e}")
            return 2
        if not words:
            _error("no command before '|' or '>'")
            return 2
        verb, args = words[0], words[1:]
        if verb in QUIT:
            return None
        if verb == "help":
            return self._with_output(pipe, target, append, lambda: self.help(args))
        name = ALIASES.get(verb, verb)
        if name not in self.verbs:
            _error(f"unknown command {verb!r} (`help` lists the commands)")
            return 1
        return self._with_output(pipe, target, append, lambda: self.run_verb(name, args))

    def run_verb(self, name: str, args: list[str]) -> int:
        from .main import main
        s = self.session
        argv = ["--no-pager", name, s.dump, *args]
        if s.vmcoreinfo_file is not None:
            argv[2:2] = ["--vmcoreinfo", s.vmcoreinfo_file]
        return main(argv)

    def _with_output(self, pipe: str | None, target: str | None, append: bool, run: Any) -> int:
        from ..errors import VmcorekitError
        if target is not None:
            try:
                fd = _open_target(target, append)
            except VmcorekitError as e:
                _error(str(e))
                return 1
            try:
                with _Stdout(fd):
                    return int(run())
            finally:
                os.close(fd)
        if pipe is not None:
            sys.stdout.flush()
            proc = subprocess.Popen(pipe, shell=True, stdin=subprocess.PIPE)
            assert proc.stdin is not None
            try:
                with _Stdout(proc.stdin.fileno()):
                    rc = int(run())
            finally:
                proc.stdin.close()
                proc.wait()
            return rc
        if self.page:
            import tempfile
            with tempfile.TemporaryFile() as f:  # unlinked, 0600: dump data stays private
                with _Stdout(f.fileno()):
                    rc = int(run())
                f.seek(0)
                _page(f.read())
            return rc
        return int(run())

    def help(self, args: list[str]) -> int:
        from .main import main
        if args:
            name = ALIASES.get(args[0], args[0])
            if name not in self.verbs:
                _error(f"unknown command {args[0]!r} (`help` lists the commands)")
                return 1
            click.echo(f"In a session the dump is implied: {args[0]} [OPTIONS] ARGS (DUMP below is the session's).")
            return main(["--no-pager", name, "--help"])
        width = max(len(n) for n in self.verbs) + 2
        lines = ["Verbs (each is also `vmcorekit VERB DUMP ...`; `help VERB` for its options):"]
        for name, cmd in sorted(self.verbs.items()):
            lines.append(f"  {name.ljust(width)}{cmd.get_short_help_str(70)}")
        lines += ["", "  VERB ... | CMD     pipe the output through a shell command",
                  "  VERB ... > FILE    write it to FILE (>> appends)",
                  "  !CMD               run a shell command",
                  "  union              the same as struct",
                  "  q, quit, exit      leave the session"]
        click.echo("\n".join(lines))
        return 0

    # -- many lines ---------------------------------------------------------------------------
    def run_script(self, lines: Iterable[str]) -> tuple[int, bool]:
        """(status, quit): stops at `q`, or at the first error with --strict."""
        for line in lines:
            rc = self.run_line(line)
            if rc is None:
                return 0, True
            if self.strict and rc not in (0, 3):
                return rc, True
        return 0, False

    def interact(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        path = history_path()
        history: Any = InMemoryHistory()
        if path is not None:
            try:
                history = FileHistory(path)
            except OSError:
                pass
        ps: Any = PromptSession(history=history, completer=Completer(self),
                                complete_while_typing=False)
        while True:
            try:
                line = ps.prompt(PROMPT)
            except KeyboardInterrupt:
                continue
            except EOFError:
                click.echo()
                return 0
            try:
                if self.run_line(line) is None:
                    return 0
            except KeyboardInterrupt:  # Ctrl-C in a pager or a pipe: back to the prompt
                click.echo("vmcorekit: interrupted", err=True)


def history_path() -> str | None:
    """$XDG_STATE_HOME/vmcorekit/crash_history (~/.local/state/...), made 0600 before use:
    the lines typed name addresses and symbols of a dump that may be confidential."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    folder = os.path.join(base, "vmcorekit")
    path = os.path.join(folder, "crash_history")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            os.fchmod(fd, 0o600)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > HISTORY_LINES * 200:  # bounded: keep the newest part
            with open(path, "rb") as f:
                f.seek(size - HISTORY_LINES * 100)
                tail = f.read()
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(tail[tail.find(b"\n# ") + 1:] if b"\n# " in tail else b"")
        return path
    except OSError:
        return None


# -- completion ---------------------------------------------------------------------------------
class Names:
    """Sorted names for prefix search, built once per session on first use."""

    def __init__(self, prog: "Program") -> None:
        self.prog = prog
        self._symbols: list[str] | None = None
        self._structs: list[str] | None = None

    @property
    def symbols(self) -> list[str]:
        if self._symbols is None:
            self._symbols = sorted(set(self.prog.symbols.arrays()[0]))
        return self._symbols

    @property
    def structs(self) -> list[str]:
        if self._structs is None:
            from ..program.types.btf import BtfKind
            names: set[str] = set()
            for src in getattr(self.prog.types, "sources", []):
                b = getattr(src, "btf", None)
                if b is not None:
                    names.update(b.names_of_kinds((BtfKind.STRUCT, BtfKind.UNION)))
            self._structs = sorted(names)
        return self._structs


def with_prefix(names: list[str], prefix: str, limit: int = MAX_COMPLETIONS) -> list[str]:
    """The first `limit` names starting with `prefix` (names sorted)."""
    i = bisect.bisect_left(names, prefix)
    out: list[str] = []
    while i < len(names) and len(out) < limit and names[i].startswith(prefix):
        out.append(names[i])
        i += 1
    return out


STRUCT_VERBS = frozenset({"struct", "union", "whatis", "list"})
EXPR_VERBS = frozenset({"p", "px", "pd"})


def member_names(prog: "Program", type_name: str, path: list[str]) -> list[str]:
    """Member names of `type_name` after following `path` (nested members)."""
    from ..program.types import TypeKind
    from .struct import resolve_struct_type
    t = resolve_struct_type(prog, type_name).strip_typedefs()
    for m in path:
        t = t.member(m).type.strip_typedefs()
        while t.kind in (TypeKind.POINTER, TypeKind.ARRAY):
            t = t.type.strip_typedefs()
    return t.member_names() if t.kind in (TypeKind.STRUCT, TypeKind.UNION) else []


def complete_word(runner: Runner, words: list[str], word: str) -> list[str]:
    """Completions of `word`, the last (partial) word of a line whose earlier words are `words`."""
    import re
    prog = runner.session.prog
    names = _names(runner)
    if not words:
        return sorted(n for n in [*runner.verbs, *ALIASES, "help", *QUIT] if n.startswith(word))
    verb = words[0]
    if verb == "help":
        return sorted(n for n in runner.verbs if n.startswith(word))
    if word.startswith("-"):
        cmd = runner.verbs.get(ALIASES.get(verb, verb))
        opts = [o for p in (cmd.params if cmd else []) for o in getattr(p, "opts", []) if o.startswith("-")]
        return sorted(o for o in opts if o.startswith(word))
    if verb in EXPR_VERBS:
        m = re.match(r"^(.*?)(\.|->)([A-Za-z0-9_]*)$", word)
        if m:
            base, op, part = m.groups()
            try:
                from .p import evaluate
                from ..program.types import TypeKind
                t = evaluate(prog, base).type_.strip_typedefs()
                while t.kind in (TypeKind.POINTER, TypeKind.ARRAY):
                    t = t.type.strip_typedefs()
                members = t.member_names() if t.kind in (TypeKind.STRUCT, TypeKind.UNION) else []
            except Exception:
                return []
            return [f"{base}{op}{n}" for n in members if n.startswith(part)][:MAX_COMPLETIONS]
        lead = re.match(r"^([^A-Za-z_]*)([A-Za-z0-9_]*)$", word)
        if lead:
            pre, part = lead.groups()
            return [pre + n for n in with_prefix(names.symbols, part)]
        return []
    if verb == "task" and words[-1] in ("-R", "--members"):  # members of task_struct, comma-separated
        word = f"task_struct.{word}"
        return [c.removeprefix("task_struct.") for c in complete_word(runner, ["struct"], word)]
    if verb in STRUCT_VERBS and "." in word:
        head, _, tail = word.partition(".")
        *done, part = tail.split(",")
        path = part.split(".")
        try:
            members = member_names(prog, head, path[:-1])
        except Exception:
            return []
        prefix = word[:len(word) - len(path[-1])]
        return [prefix + n for n in members if n.startswith(path[-1])][:MAX_COMPLETIONS]
    if verb in STRUCT_VERBS and (len(words) == 1 or words[-1] in ("-s", "-o", "--struct", "--offset")):
        out = with_prefix(names.structs, word)
        if verb == "whatis":
            out += with_prefix(names.symbols, word, MAX_COMPLETIONS - len(out))
        return out
    return with_prefix(names.symbols, word)


def _names(runner: Runner) -> Names:
    n = getattr(runner, "_names", None)
    if n is None:
        n = Names(runner.session.prog)
        runner._names = n  # type: ignore[attr-defined]
    return n


def Completer(runner: Runner) -> Any:
    """prompt_toolkit's completer over complete_word()."""
    from prompt_toolkit.completion import Completer as PTCompleter
    from prompt_toolkit.completion import Completion

    class _C(PTCompleter):  # type: ignore[misc]
        def get_completions(self, document: Any, complete_event: Any) -> Iterator[Any]:
            text = document.text_before_cursor
            if text.lstrip().startswith("!") or "|" in text or ">" in text.replace("->", ""):
                return
            parts = text.split()
            if text and not text[-1].isspace():
                words, word = parts[:-1], parts[-1] if parts else ""
            else:
                words, word = parts, ""
            try:
                found = complete_word(runner, words, word)
            except Exception:
                return
            for c in found:
                yield Completion(c, start_position=-len(word))
    return _C()


# -- the command --------------------------------------------------------------------------------
@click.command("crash")
@dump_arguments
@click.option("-i", "--input", "script", type=click.Path(exists=True, dir_okay=False),
              help="Run the commands of FILE first (then the terminal's, unless it quits).")
@click.option("--strict", is_flag=True, help="In a script: stop at the first failing command, with its status.")
@click.option("--echo", is_flag=True, help="Print each script line after the prompt before its output.")
@click.pass_context
def command(ctx: click.Context, dump: str, vmcoreinfo_file: str | None, script: str | None,
            strict: bool, echo: bool) -> None:
    """One session over DUMP, opened once: crash's verbs at a prompt with history and tab
    completion, `| CMD` and `> FILE` after a verb, `!CMD`, `help VERB`. A script comes
    from -i FILE or a non-terminal stdin."""
    if current_session() is not None:
        raise click.UsageError("already in a session")
    tty = sys.stdin.isatty()
    prog = open_program(dump, vmcoreinfo_file)
    session = Session(prog, dump, vmcoreinfo_file)
    saved = enter_session(session)
    try:
        page = sys.stdout.isatty() and not os.environ.get("VMCOREKIT_NO_PAGER") \
            and not (ctx.parent is not None and ctx.parent.params.get("no_pager"))
        runner = Runner(session, page=page, strict=strict, echo=echo)
        rc = 0
        if script is not None:
            with open(script, encoding="utf-8", errors="replace") as f:
                rc, quit_ = runner.run_script(f)
            if quit_ or rc:
                ctx.exit(rc)
        if tty:
            rc = runner.interact()
        else:
            rc, _ = runner.run_script(sys.stdin)
        ctx.exit(rc)
    finally:
        enter_session(saved)
        prog.close()
