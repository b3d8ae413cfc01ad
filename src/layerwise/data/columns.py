"""Column specs: names, globs, ranges and "all remaining columns", resolved on a table.

An input may name its columns by a spec instead of one by one (docs/decisions.md, "Column
globs")::

    inputs:
      - {columns: "t*", type: numeric}                  # one numeric input per column t…
      - {name: signal, type: series, columns: "x0..x39"}  # one series input over 40 columns
      - {columns: "*", exclude: [id], type: numeric}    # every column not used elsewhere

A spec is a string or a list of strings, each one of:

- a plain column name (it must exist);
- a glob (``*``, ``?``, ``[…]``, matched case-sensitively against the column names);
- a range ``t0..t149`` (or ``t0..149``): the numbered columns ``t0, t1, …, t149``, each of
  which must exist.

A glob never takes a column that the config uses elsewhere (an output, an input named one
by one, the split's column or group) nor one an earlier spec took, so ``"*"`` means all
remaining columns. ``exclude`` (names or globs) removes columns from the result. A spec
that matches nothing is an error naming the spec and the table's columns.

:func:`expand` rewrites a config in place, before its encoders are built: an entry of
``numeric``/``binary``/``category``/``text`` inputs with ``columns`` becomes one input per
matched column (named after it, with the entry's other settings); a ``series`` input gets
its explicit list of columns. The artifact stores that expanded config, so a saved model
reads exactly the columns it was trained on.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any

from layerwise.errors import ConfigError

_GLOB = re.compile(r"[*?\[]")
_RANGE = re.compile(r"^(.*?)(\d+)\.\.(?:\1)?(\d+)$")


def is_glob(item: str) -> bool:
    return bool(_GLOB.search(item))


def resolve(spec: str | Sequence[str], available: Sequence[str], *,
            exclude: Iterable[str] = (), taken: Iterable[str] = (),
            where: str = "columns") -> list[str]:
    """The columns ``spec`` names, in table order for globs, in spec order otherwise.

    ``taken``: columns a glob may not take (used elsewhere); ``where``: the config key,
    for the error messages."""
    items = [spec] if isinstance(spec, str) else list(spec)
    if not items:
        raise ConfigError(f"{where}: the list of columns is empty")
    have, blocked = set(available), set(taken)
    out: list[str] = []
    for item in items:
        for name in _one(item, available, have, blocked, where):
            if name not in out:
                out.append(name)
    drops = list(exclude)
    kept = [c for c in out if not any(c == d or (is_glob(d) and fnmatch.fnmatchcase(c, d))
                                      for d in drops)]
    if not kept:
        raise ConfigError(f"{where}: {_show(spec)} leaves no column after exclude {drops}")
    return kept


def _one(item: str, available: Sequence[str], have: set[str], blocked: set[str],
         where: str) -> list[str]:
    if not isinstance(item, str) or not item:
        raise ConfigError(f"{where}: expected column names, globs or ranges; got {item!r}")
    if is_glob(item):
        hits = [c for c in available if c not in blocked and fnmatch.fnmatchcase(c, item)]
        if not hits:
            raise ConfigError(f"{where}: the glob {item!r} matches no column"
                              f"{' not already used' if blocked else ''} (columns: "
                              f"{_columns(available)})")
        return hits
    m = _RANGE.match(item)
    if m:
        prefix, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
        if hi < lo:
            raise ConfigError(f"{where}: the range {item!r} runs backwards")
        names = [f"{prefix}{i}" for i in range(lo, hi + 1)]
        missing = [n for n in names if n not in have]
        if missing:
            raise ConfigError(f"{where}: the range {item!r} names {len(missing)} column(s) "
                              f"the data does not have ({', '.join(missing[:5])}"
                              f"{', …' if len(missing) > 5 else ''}); columns: "
                              f"{_columns(available)}")
        return names
    if item not in have:
        raise ConfigError(f"{where}: no column {item!r} (columns: {_columns(available)})")
    return [item]


def _columns(available: Sequence[str]) -> str:
    shown = ", ".join(map(repr, list(available)[:20]))
    return shown + (f", … ({len(available)} in all)" if len(available) > 20 else "")


def _show(spec: str | Sequence[str]) -> str:
    return repr(spec) if isinstance(spec, str) else repr(list(spec))


# ---------------------------------------------------------------------------- configs


def explicit(spec: str | Sequence[str], exclude: Sequence[str] = ()) -> bool:
    """Whether a spec is a plain list of column names already (nothing to resolve)."""
    return not isinstance(spec, str) and not exclude and \
        not any(is_glob(s) or _RANGE.match(s) for s in spec)


def needs_expansion(cfg: Any) -> bool:
    """Whether any input of ``cfg`` names its columns by a spec not yet expanded."""
    return any(_spec(f) is not None for f in getattr(cfg, "inputs", []))


def _spec(f: Any) -> Any:
    """An input's column spec still to resolve: a per-column entry's ``columns``, or a
    series input's spec other than a plain list of names."""
    spec = getattr(f, "columns", None)
    if spec is None:
        return None
    if f.type == "series" and explicit(spec, f.exclude):
        return None  # already explicit
    return spec


def _used(cfg: Any) -> set[str]:
    """Columns the config names one by one (a glob leaves these alone)."""
    used = {f.name for f in cfg.outputs}
    for f in cfg.inputs:
        spec = getattr(f, "columns", None)
        if spec is None:
            used.add(f.name)
        else:  # the plain names of a spec are its own, whatever order the entries come in
            used |= {s for s in ([spec] if isinstance(spec, str) else spec)
                     if not is_glob(s) and not _RANGE.match(s)}
    split = cfg.data.split
    used |= {c for c in (split.column, split.group) if c}
    return used


def expand(cfg: Any, available: Sequence[str]) -> None:
    """Resolve every column spec of ``cfg``'s inputs against the columns ``available``
    (see the module docstring); ``cfg.inputs`` is replaced. A no-op without specs."""
    if not needs_expansion(cfg):
        return
    taken = _used(cfg)
    inputs: list[Any] = []
    for i, f in enumerate(cfg.inputs):
        spec = getattr(f, "columns", None)
        if spec is None:
            inputs.append(f)
            continue
        where = f"inputs[{i}] ({f.name!r}) columns"
        names = resolve(spec, available, exclude=f.exclude, taken=taken, where=where)
        taken |= set(names)
        if f.type == "series":
            inputs.append(f.model_copy(update={"columns": names, "exclude": []}))
            continue
        clash = sorted(set(names) & {g.name for g in inputs})
        if clash:
            raise ConfigError(f"{where}: column {clash[0]!r} is already an input")
        inputs += [type(f).model_validate({**f.model_dump(exclude={"columns", "exclude"}),
                                           "name": n}) for n in names]
    from pydantic import ValidationError

    try:
        cfg.inputs = inputs
    except ValidationError as e:  # e.g. a matched column that is also an output's name
        raise ConfigError(f"inputs after expanding the column specs: "
                          f"{e.errors()[0]['msg']}") from None
