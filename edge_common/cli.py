"""Command-line plumbing shared by every command.

Options have one home: the fields of a command's config dataclass. :func:`option` puts the help,
choices and flags in a field's metadata, :func:`add_options` generates the argparse arguments
from the fields, and :func:`config_from_args` builds the config back in one call. Adding an
option is adding a field.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path
from typing import Any, Callable, NoReturn

from .errors import EdgeError, closest, one_line, redact

_META = "option"


@dataclasses.dataclass(frozen=True)
class OptionMeta:
    help: str
    flag: str | None = None  # default: --field-name (booleans that default to True: --no-field-name)
    choices: tuple[Any, ...] | None = None
    group: str | None = None  # --help section
    resume: bool = False  # training: the option changes what a checkpoint means
    base: Any = None  # training: the value when neither the command line nor the registry sets one
    both: bool = False  # booleans: --name and --no-name
    # Booleans whose default None means "decide by the machine": the flag that sets False (``--window``
    # against ``--headless``), with its help; the two are mutually exclusive.
    off: str | None = None
    off_help: str = ""
    metavar: str | None = None
    cli: bool = True  # False: a config field with no command-line option
    # Bounds of a number, checked by :func:`check_ranges` and shown in --help: (low, high), either
    # None for unbounded; ``open_low``/``open_high`` exclude the bound itself.
    bounds: tuple[float | None, float | None] | None = None
    open_low: bool = False
    open_high: bool = False
    required: bool = False

    def range_text(self) -> str:
        """The bounds as --help and errors spell them: "1..64", "> 0", "0..1", "(0, 1]"."""
        if self.bounds is None:
            return ""
        low, high = self.bounds
        if high is None:
            return f"{'>' if self.open_low else '>='} {low:g}" if low is not None else ""
        if low is None:
            return f"{'<' if self.open_high else '<='} {high:g}"
        if not (self.open_low or self.open_high):
            return f"{low:g}..{high:g}"
        return f"{'(' if self.open_low else '['}{low:g}, {high:g}{')' if self.open_high else ']'}"

    def within(self, value: float) -> bool:
        low, high = self.bounds or (None, None)
        if value != value or value in (float("inf"), float("-inf")):
            return False  # nan and infinities are never a setting
        if low is not None and (value < low or (self.open_low and value == low)):
            return False
        return not (high is not None and (value > high or (self.open_high and value == high)))


def option(
    default: Any = None, help: str = "", *, default_factory: Callable[[], Any] | None = None, **meta: Any
) -> Any:
    """A dataclass field that is also a command-line option (see :class:`OptionMeta`)."""
    metadata = {_META: OptionMeta(help=help, **meta)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_meta(field: dataclasses.Field) -> OptionMeta | None:
    return field.metadata.get(_META)


def option_fields(cls: type) -> list[tuple[dataclasses.Field, OptionMeta]]:
    """The fields of ``cls`` that carry option metadata, in declaration order."""
    return [(f, meta) for f in dataclasses.fields(cls) if (meta := option_meta(f)) is not None]


def invoked_as(prog: str) -> str:
    """``prog`` ("python -m edge_runtime doctor") as the user typed it: a console script
    (``edge-classify doctor``) names itself, so every usage and error line names the command that ran."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    words = prog.split()
    if (
        len(words) < 3
        or words[:2] != ["python", "-m"]
        or not script
        or script.endswith(".py")
        or script in ("-c", "-m", "python", "python3")
    ):
        return prog
    return " ".join([script, *words[3:]])


class ArgumentParser(argparse.ArgumentParser):
    """argparse that never guesses: abbreviations are refused, and a mistyped option is answered
    with the real one, on one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        if kwargs.get("prog"):
            kwargs["prog"] = invoked_as(kwargs["prog"])
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments:" in message:
            options = [opt for action in self._actions for opt in action.option_strings]
            hints = []
            for word in message.split("unrecognized arguments:", 1)[1].split():
                if word.startswith("-"):
                    near = closest(word.split("=")[0], options, cutoff=0.6)
                    if near:
                        hints.append(f"{word.split('=')[0]}: did you mean {near}?")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def add_options(
    parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None
) -> None:
    """Add one argument per option field of the dataclass ``cls`` (all but ``skip``, or ``only`` those),
    grouped by ``OptionMeta.group``."""
    hints = typing.get_type_hints(cls)
    groups: dict[str | None, Any] = {None: parser}
    for field, meta in option_fields(cls):
        if not meta.cli or field.name in skip or (only is not None and field.name not in only):
            continue
        if meta.group not in groups:
            groups[meta.group] = parser.add_argument_group(meta.group)
        target = groups[meta.group]
        default = _default(field)
        kind, many = _value_type(hints[field.name])
        flag = meta.flag or "--" + field.name.replace("_", "-")
        if kind is bool:
            if meta.off:
                pair = target.add_mutually_exclusive_group()
                pair.add_argument(flag, dest=field.name, action="store_true", default=default, help=meta.help)
                pair.add_argument(meta.off, dest=field.name, action="store_false", help=meta.off_help)
            elif meta.both:
                target.add_argument(
                    flag, dest=field.name, action=argparse.BooleanOptionalAction, default=default, help=meta.help
                )
            elif default:
                target.add_argument(
                    meta.flag or "--no-" + field.name.replace("_", "-"),
                    dest=field.name,
                    action="store_false",
                    help=meta.help,
                )
            else:
                target.add_argument(flag, dest=field.name, action="store_true", help=meta.help)
            continue
        text = meta.help
        if meta.bounds is not None:
            text = f"{text} [{meta.range_text()}]"
        if meta.base is not None:
            text = f"{text} (default: the registry's, else {meta.base})"
        elif default is not None and default != () and "default" not in text:
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            text = f"{text} (default: {shown})"
        # A repeated flag adds to the list (`--class a --class b`), as `--class a b` does.
        extra: dict[str, Any] = {"nargs": "+", "action": "extend", "default": None} if many else {"default": default}
        metavar = meta.metavar or ("VALUE" if many and meta.choices else None)
        target.add_argument(
            flag,
            dest=field.name,
            type=kind,
            help=text,
            choices=meta.choices,
            required=meta.required,
            metavar=metavar,
            **extra,
        )


def config_from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """The dataclass ``cls`` built from parsed arguments (and ``fixed`` values for the rest), every
    field checked against its bounds (one line naming the flag and its range, exit 2).

    Raises:
        EdgeError: a number outside its option's bounds.
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field, _meta in option_fields(cls):
        if field.name in fixed or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        if _value_type(hints[field.name])[1]:
            if value is None:
                continue  # not given: the field's own default
            value = tuple(value)
        values[field.name] = value
    config = cls(**values, **fixed)
    check_ranges(config)  # the one place every command's ranges are checked
    return config


def check_ranges(config: Any, error: type[EdgeError] = EdgeError) -> None:
    """Refuse, in one line naming the flag, any number of ``config`` outside its option's bounds
    (nan and infinities included); None (not set) is always allowed.

    Raises:
        EdgeError: the first field out of range.
    """
    for field, meta in option_fields(type(config)):
        value = getattr(config, field.name)
        if meta.bounds is None or value is None:
            continue
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if not meta.within(float(item)):
                flag = meta.flag or "--" + field.name.replace("_", "-")
                raise error(f"{flag} must be {meta.range_text()}, got {item}")


def resume_keys(cls: type) -> tuple[str, ...]:
    """The fields marked ``resume``: what a checkpoint was made with."""
    return tuple(field.name for field, meta in option_fields(cls) if meta.resume)


def run_reporting_errors(work: Callable[[], int], interrupted: str) -> int:
    """Run a command body: a predictable mistake becomes one ``error:`` line and its exit code,
    Ctrl-C says what was kept (``interrupted``) and exits 130."""
    try:
        code = work()
        sys.stdout.flush()  # a closed pipe is reported here, not as a traceback at exit
        return code
    except EdgeError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return quiet_broken_pipe()


def run_command(
    parser: argparse.ArgumentParser,
    work: Callable[[argparse.Namespace], int],
    argv: list[str] | None,
    interrupted: str = "nothing was written",
) -> int:
    """Every command's ``main``: parse ``argv``, set up logging (``--verbose`` where the command has
    it), then run ``work(args)`` with predictable mistakes reported as one line (see
    :func:`run_reporting_errors`; ``interrupted`` says what Ctrl-C keeps)."""
    args = parser.parse_args(argv)
    setup_logging(bool(vars(args).get("verbose", False)))
    return run_reporting_errors(lambda: work(args), interrupted)


def quiet_broken_pipe() -> int:
    """The reader of stdout went away (``| head``): stop quietly with the shell's SIGPIPE status, 141.

    stdout is pointed at /dev/null so the interpreter's final flush cannot raise again.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def setup_logging(verbose: bool = False) -> None:
    """Warnings and progress lines to stderr, one line each, no tracebacks."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redacting)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL", "tf2onnx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _redacting(record: logging.LogRecord) -> bool:
    """A log filter: no line shows a URL's password (a camera's, a broker's, a webhook's)."""
    message = record.getMessage()
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    return True


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _value_type(hint: Any) -> tuple[type, bool]:
    """(element type, whether it is a tuple of them) of a field annotation such as ``int | None``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return args[0], True
    if args and origin is not None:  # Optional[X] / X | None
        return _value_type(args[0])
    return hint, False
