"""Flags made from a frozen config dataclass, the one way every entry point turns its config into flags and back.

Each field becomes the flag of the same name (with an optional prefix), its type, its default and, as help, the
one-line comment written after it in the class. A field holding a dataclass (ControllerTrainConfig's `es`)
gives its own fields flags in turn. So a setting is defined once, in its config, and every entry point that
uses that config offers it:

    CONFIG_FLAGS = ConfigFlags(VAETrainConfig)
    def define_flags(): CONFIG_FLAGS.define(); flags.DEFINE_string("exp_dir", ...)
    def main(argv): train_vae(FLAGS.exp_dir, CONFIG_FLAGS.parse())
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from absl import flags

from common.errors import UserError

# Flags defined here belong to the module that asked for them, so its `--help` lists them (absl's way for
# helpers that define flags on a caller's behalf).
flags.disclaim_key_flags()

_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")
_COMMENT_LINE = re.compile(r"^\s+#\s*(.*)$")


@functools.cache
def field_help(config_class: type) -> dict[str, str]:
    """Each field's help: the comment after it in the class body (with its continuation lines), or its doc."""
    try:
        lines = inspect.getsource(config_class).splitlines()
    except (OSError, TypeError):
        lines = []
    names = {field.name for field in dataclasses.fields(config_class)}
    help_text: dict[str, str] = {}
    current = None
    for line in lines:
        comment = _COMMENT_LINE.match(line)
        if comment and current is not None:
            help_text[current] += " " + comment.group(1).strip()
            continue
        match = _FIELD_LINE.match(line)
        current = match.group(1) if match and match.group(1) in names else None
        if current is not None:
            help_text[current] = (match.group(2) or "").strip()
    return {name: text for name, text in help_text.items() if text}


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type without `| None`, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


@dataclasses.dataclass(frozen=True)
class _Leaf:
    path: tuple[str, ...]  # field names from the top config down to this field
    flag: str
    kind: Any  # bool, int, float, str or tuple[T, ...]
    default: Any
    help: str


@dataclasses.dataclass(frozen=True)
class ConfigFlags:
    """How one config class maps onto flags.

    defaults: an instance whose values are the flags' defaults (None: the class's own), for an entry point that
        documents other defaults than the config's (run.iterate's smaller evaluations).
    prefix: put before every flag name (`rnn_` makes RNNTrainConfig's `steps` the flag `--rnn_steps`).
    names: dotted field paths mapped to a flag's whole name (`{"vae.z_size": "z_size"}`), or, for a field that
        holds a dataclass, to the prefix its fields' flags add to the parent's (`{"vae": "vae_"}`; unnamed: none).
    skip: dotted field paths that get no flag; they keep the value in `defaults` (a setting the caller fills in,
        such as a pipeline's shared seed, or one that only makes sense elsewhere).
    """

    config_class: type
    defaults: Any = None
    prefix: str = ""
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    skip: frozenset[str] | tuple[str, ...] = ()

    def _defaults(self) -> Any:
        return self.defaults if self.defaults is not None else self.config_class()

    def _leaves(self, config_class: type, default: Any, path: tuple[str, ...], prefix: str) -> Iterator[_Leaf]:
        hints = typing.get_type_hints(config_class)
        help_text = field_help(config_class)
        for field in dataclasses.fields(config_class):
            dotted = ".".join((*path, field.name))
            if dotted in self.skip:
                continue
            kind, _ = _base_type(hints[field.name])
            value = getattr(default, field.name)
            if dataclasses.is_dataclass(kind):
                yield from self._leaves(kind, value, (*path, field.name), prefix + self.names.get(dotted, ""))
                continue
            flag = self.names.get(dotted, prefix + field.name)
            text = help_text.get(field.name) or field.name.replace("_", " ").capitalize() + "."
            yield _Leaf((*path, field.name), flag, kind, value, text)

    def leaves(self) -> list[_Leaf]:
        """Every flag this config gives, in field order."""
        return list(self._leaves(self.config_class, self._defaults(), (), self.prefix))

    def flag_names(self) -> list[str]:
        return [leaf.flag for leaf in self.leaves()]

    def values(self, config: Any) -> dict[str, Any]:
        """Each flag's value in `config`, by flag name: what `parse` reads back from flags set to them."""
        result = {}
        for leaf in self.leaves():
            value = config
            for name in leaf.path:
                value = getattr(value, name)
            result[leaf.flag] = value
        return result

    def define(self, flag_values: flags.FlagValues = flags.FLAGS) -> None:
        """Defines one flag per (nested) field on `flag_values`."""
        for leaf in self.leaves():
            kind, default = leaf.kind, leaf.default
            if typing.get_origin(kind) is tuple:
                flags.DEFINE_list(leaf.flag, None if default is None else [f"{v:g}" if isinstance(v, float)
                                                                           else str(v) for v in default],
                                  leaf.help, flag_values=flag_values)
                continue
            define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                      str: flags.DEFINE_string}.get(kind)
            if define is None:
                raise TypeError(f"{self.config_class.__name__}.{'.'.join(leaf.path)}: no flag type for {kind}")
            define(leaf.flag, default, leaf.help, flag_values=flag_values)

    def parse(self, flag_values: flags.FlagValues = flags.FLAGS) -> Any:
        """The config the parsed flags give (skipped fields keep their defaults)."""
        values = {leaf.path: _from_flag(leaf, flag_values[leaf.flag].value) for leaf in self.leaves()}
        return _build(self._defaults(), (), values)


def _from_flag(leaf: _Leaf, value: Any) -> Any:
    if typing.get_origin(leaf.kind) is not tuple or value is None:
        return value
    element = typing.get_args(leaf.kind)[0]
    try:
        return tuple(element(item) for item in value)
    except ValueError:
        raise UserError(f"--{leaf.flag}={','.join(value)}: expected a comma-separated list of "
                        f"{element.__name__} values") from None


def _build(default: Any, path: tuple[str, ...], values: dict[tuple[str, ...], Any]) -> Any:
    """`default` with every flag's value put in place, nested configs rebuilt the same way."""
    changes = {}
    for field in dataclasses.fields(default):
        key = (*path, field.name)
        if key in values:
            changes[field.name] = values[key]
        elif any(other[:len(key)] == key for other in values):
            changes[field.name] = _build(getattr(default, field.name), key, values)
    return dataclasses.replace(default, **changes)
