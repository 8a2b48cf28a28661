"""The importable modules: immutable proxies of audited public attributes, never module objects.

RestrictedPython guards only attribute access written in the cell's source; a real module placed in
reach gives away everything it imports (`json.codecs.sys.modules`). So each allowed module is
handed over as a ModuleProxy holding an explicit list of names, each checked by hand:

* left out: anything that is a module, reads or writes attributes by a string name
  (string.Formatter, operator.attrgetter/methodcaller, functools.wraps/update_wrapper,
  total_ordering, singledispatch), takes a file, or touches interpreter state (random.getstate).
* json.dumps/loads are wrapped to refuse `cls=` (a class the cell picks would be instantiated by
  trusted code).
"""

from __future__ import annotations

import bisect
import collections
import datetime
import difflib
import functools
import heapq
import itertools
import json
import math
import operator
import random
import re
import statistics
import string
import textwrap
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any

# C code of datetime imports these lazily (see _C_LEVEL_IMPORTS); they are loaded now so that
# no cell ever needs the real import machinery.
import _strptime  # noqa: F401  # isort: skip
import time  # noqa: F401  # isort: skip
import warnings  # noqa: F401  # isort: skip


class ModuleProxy:
    """Read-only stand-in for a module: attribute lookups see only the audited names.

    There is deliberately no `__name__`: CPython's `from m import x` falls back to
    sys.modules[f"{m.__name__}.{x}"] when `x` is missing, which would hand out real submodules.
    """

    __slots__ = ("_proxy_name", "_proxy_attrs")

    def __init__(self, name: str, attrs: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_proxy_name", name)
        object.__setattr__(self, "_proxy_attrs", MappingProxyType(dict(attrs)))

    def __getattribute__(self, attr: str) -> Any:
        if attr == "__class__":
            return ModuleProxy
        attrs = object.__getattribute__(self, "_proxy_attrs")
        if attr in attrs:
            return attrs[attr]
        name = object.__getattribute__(self, "_proxy_name")
        raise AttributeError(f"module {name!r} has no attribute {attr!r} in the sandbox")

    def __setattr__(self, attr: str, value: Any) -> None:
        raise TypeError("modules are read-only in the sandbox")

    def __delattr__(self, attr: str) -> None:
        raise TypeError("modules are read-only in the sandbox")

    def __repr__(self) -> str:
        return f"<module {object.__getattribute__(self, '_proxy_name')!r}>"

    def __dir__(self) -> Iterable[str]:
        return sorted(object.__getattribute__(self, "_proxy_attrs"))


def proxy_attrs(proxy: ModuleProxy) -> Mapping[str, Any]:
    return object.__getattribute__(proxy, "_proxy_attrs")


def _pick(module: ModuleType, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(module, name) for name in names}


class RankedCounter(collections.Counter):
    """The sandbox's Counter: prints one count per line, most common first, ends marked.

    Given `Counter({'a': 100, …, 'h': 25})`, a 1.5B model asked for the least common label
    named another one (measured three times on OOLONG-style tasks with the right counts printed).
    """

    def __repr__(self) -> str:
        if not self:
            return "Counter()"
        ranked = self.most_common()
        top, bottom = ranked[0][1], ranked[-1][1]
        marks = {top: "  (most common)", bottom: "  (least common)"} if top != bottom else {}
        lines = [f"  {key!r}: {count}{marks.get(count, '')}" for key, count in ranked]
        return f"{_size(self)}, most common first:\n" + "\n".join(lines)

    __str__ = __repr__


def _size(counter: collections.Counter) -> str:
    """How many values a Counter holds and what its counts add up to: asked how many people a
    printed Counter of 22 names (one each) held, the 1.5B model answered 15."""
    different = "1 value" if len(counter) == 1 else f"{len(counter)} different values"
    try:
        return f"Counter of {different}, counts adding up to {sum(counter.values())}"
    except TypeError:  # counts a cell set to something else
        return f"Counter of {different}"


def _json_dumps(obj: Any, **kwargs: Any) -> str:
    if "cls" in kwargs:
        raise TypeError("json.dumps(cls=...) is not allowed in the sandbox")
    return json.dumps(obj, **kwargs)


def _json_loads(s: str | bytes, **kwargs: Any) -> Any:
    if "cls" in kwargs:
        raise TypeError("json.loads(cls=...) is not allowed in the sandbox")
    return json.loads(s, **kwargs)


_OPERATOR_LEFT_OUT = frozenset(
    # attrgetter/methodcaller read attributes by name; setitem/delitem bypass the write guard;
    # call and length_hint add nothing a cell needs.
    {"attrgetter", "methodcaller", "setitem", "delitem", "call", "length_hint"}
)


def _public(module: ModuleType, left_out: frozenset[str] = frozenset()) -> list[str]:
    return [
        n
        for n in dir(module)
        if not n.startswith("_")
        and n not in left_out
        and not isinstance(getattr(module, n), ModuleType)
    ]


def _module_tables() -> dict[str, dict[str, Any]]:
    """Name -> audited attributes, per allowed module."""
    return {
        "re": _pick(
            re,
            [
                "compile", "search", "match", "fullmatch", "findall", "finditer", "sub",
                "subn", "split", "escape", "error", "A", "ASCII", "I", "IGNORECASE", "M",
                "MULTILINE", "S", "DOTALL", "X", "VERBOSE", "U", "UNICODE", "NOFLAG",
            ],
        ),
        "json": {
            "dumps": _json_dumps,
            "loads": _json_loads,
            "JSONDecodeError": json.JSONDecodeError,
        },
        "math": _pick(math, _public(math)),
        "statistics": _pick(
            statistics,
            [
                "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low",
                "median_high", "median_grouped", "mode", "multimode", "quantiles", "pstdev",
                "pvariance", "stdev", "variance", "correlation", "covariance",
                "linear_regression", "StatisticsError",
            ],
        ),
        "collections": {
            **_pick(collections, ["defaultdict", "OrderedDict", "deque", "namedtuple", "ChainMap"]),
            "Counter": RankedCounter,
        },
        "itertools": _pick(itertools, _public(itertools)),
        "functools": _pick(functools, ["reduce", "partial", "lru_cache", "cache", "cmp_to_key"]),
        "heapq": _pick(heapq, _public(heapq)),
        "bisect": _pick(bisect, _public(bisect)),
        "datetime": _pick(
            datetime,
            ["date", "datetime", "time", "timedelta", "timezone", "MINYEAR", "MAXYEAR", "UTC"],
        ),
        "textwrap": _pick(textwrap, ["dedent", "fill", "indent", "shorten", "wrap"]),
        "difflib": _pick(
            difflib,
            [
                "SequenceMatcher", "Differ", "get_close_matches", "unified_diff",
                "context_diff", "ndiff",
            ],
        ),
        "string": _pick(
            string,
            [
                "ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
                "octdigits", "printable", "punctuation", "whitespace", "capwords",
            ],
        ),
        "random": _pick(
            random,
            [
                "random", "randint", "randrange", "choice", "choices", "sample", "shuffle",
                "uniform", "gauss", "normalvariate", "expovariate", "triangular",
                "betavariate", "getrandbits", "seed", "Random",
            ],
        ),
        "operator": _pick(operator, _public(operator, _OPERATOR_LEFT_OUT)),
    }  # fmt: skip


def build_module_proxies() -> dict[str, ModuleProxy]:
    """Fresh proxies for one worker: allowed module name -> ModuleProxy."""
    return {name: ModuleProxy(name, attrs) for name, attrs in _module_tables().items()}


# Modules that C functions reachable from a cell import for themselves (all loaded at start).
_C_LEVEL_IMPORTS = frozenset({"_strptime", "time", "warnings"})


def make_import_hook(
    proxies: Mapping[str, ModuleProxy],
) -> Callable[..., ModuleProxy | None]:
    """The `__import__` of the cell: it decides every name itself, including the fromlist."""
    allowed = ", ".join(sorted(proxies))

    def guarded_import(
        name: str,
        globals: Any = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> ModuleProxy | None:
        if type(fromlist) is list and not fromlist and level == 0 and name in _C_LEVEL_IMPORTS:
            # C code (datetime.strptime, .strftime) imports through the builtins of the calling
            # frame, which is the cell's. A cell's own import statement passes a tuple or None,
            # never a list. PyImport_Import ignores the result and reads sys.modules itself,
            # so returning None hands nothing out.
            return None
        if level != 0 or not isinstance(name, str) or name not in proxies:
            shown = name if isinstance(name, str) else "?"
            raise ImportError(
                f"import of {shown!r} is not allowed in the sandbox; available modules: {allowed}"
            )
        proxy = proxies[name]
        attrs = proxy_attrs(proxy)
        for item in fromlist or ():
            if not isinstance(item, str) or item not in attrs:
                raise ImportError(
                    f"cannot import {item!r} from {name!r} in the sandbox; "
                    f"available: {', '.join(sorted(attrs))}"
                )
        return proxy

    return guarded_import
