"""The command line's argument machinery: a one-line-error parser, list-valued argument types, and flags whose
default, choices and help come from the config dataclasses (so a default lives in exactly one place)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, NoReturn, TypeAlias

from exifray.config import field_of

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: `exifray ingest: error: ... (see --help)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def float_triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated fractions, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions train,val,test, got {text!r}")
    return values[0], values[1], values[2]


def str_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def shown(default: object) -> str:
    if isinstance(default, tuple | list):
        return ",".join(map(str, default)) or "none"
    return "none" if default is None or default == "" else str(default)


def setting_flag(parser: argparse.ArgumentParser, flag: str, cls: type, name: str, *, keep_default: bool = True,
             **options: Any) -> None:
    """`--flag` for the field `cls.name`: its help, choices and default come from the dataclass. With
    `keep_default=False` the flag defaults to None (the setting is only passed on when given)."""
    spec = field_of(cls, name)
    default = spec.default if spec.default is not dataclasses.MISSING else None
    help_text = f"{spec.metadata.get('help', '')} (default: {shown(default)})"
    if spec.metadata.get("choices") and "action" not in options:
        options.setdefault("choices", spec.metadata["choices"])
    if options.get("action") == "store_true":
        keep_default = True
    parser.add_argument(flag, dest=name, default=default if keep_default else None, help=help_text, **options)


def values(args: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The flags of `cls`'s fields that `_setting` added (absent or None flags left out)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, f.name, None) is not None}


Commands: TypeAlias = "argparse._SubParsersAction[Parser]"  # what `add_subparsers` returns
