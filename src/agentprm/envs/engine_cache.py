"""Speed-ups for the ALFWorld (textworld PDDL) engine: work it repeats or never uses, skipped.

Measured on this project's 2-core machine, a cold ALFWorld start costs ~1.4 s and a step ~58 ms, and
most of that is work the engine repeats with the same inputs or throws away:
- `fast_downward.pddl2sas(domain, problem)`: the PDDL → SAS translation. textworld runs it four times
  per cold start (`load` and `reset` each build a `PddlState`, each translating twice: plain, and
  optimized for the replanner) and twice per later reset of the same game. The result depends only
  on its text arguments, so we keep the last few. The optimized translation only feeds the replanner
  (textworld's `policy_commands` and walkthrough extras); when no replanning is wanted (see
  `replanning`), the plain translation is loaded in its place, which is a valid SAS task too.
- the TatSu parse of a grammar template string in `ContextSensitiveGrammar.derive`, run for every
  admissible command and every feedback text at every step, and of a rule condition in the
  grammar's `replace` and `query`;
- `textgen.copy_context`, which deep-copies the variable and mapping dicts of a derivation context
  for every symbol; their values (entity infos, placeholders, variables) are never mutated during a
  derivation, only the dicts are, so copying the dicts is enough.

One leak is closed too: every textworld `PddlEnv` loads its own copy of fast-downward's shared
library (`fast_downward.load_lib`, one copy per env, since the library holds one task at a time) and
never unloads it: ~5 MB per game played, so a worker grew by gigabytes over a few thousand games.
Unloading (dlclose) crashes the process at exit (the C++ library's static destructors), so instead
`release_lib` cleans a closed env's copy and keeps it for the next env of the process.

The same functions run on the same inputs; only repeated parses and translations are answered from
memory (parse results are deep-copied, since `derive` mutates the symbols it gets).
`tests/envs/test_engine_cache.py` replays games with and without these changes in separate
processes and requires identical observations, admissible commands, rewards and expert actions.
Set `AGENTPRM_ENGINE_CACHE=0` to run the engine untouched.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import lru_cache, wraps
from typing import Any

TRANSLATIONS_KEPT = 8
"""SAS translations remembered per process (a few games: a worker re-resets the games it hosts)."""

_installed = False
_replanning = True
"""Whether the optimized (replanner) translation is needed; `replanning(False)` skips it."""


@contextlib.contextmanager
def replanning(needed: bool) -> Iterator[None]:
    """Within this block, games are loaded/reset for play only (no planner) or with the planner."""
    global _replanning
    before, _replanning = _replanning, needed
    try:
        yield
    finally:
        _replanning = before


def enabled() -> bool:
    return os.environ.get("AGENTPRM_ENGINE_CACHE", "1") not in ("0", "false", "no")


def _memo_translation(fn: Callable[..., Any]) -> Callable[..., Any]:
    """pddl2sas(domain, problem, verbose=False, optimize=False) with an LRU of whole results. The
    returned task object is only read by textworld (actions, types, objects, init)."""
    memo: OrderedDict[tuple, Any] = OrderedDict()

    @wraps(fn)
    def pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        optimize = bool(optimize) and _replanning  # the plain SAS stands in when nobody replans
        key = (domain, problem, optimize)
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
        result = fn(domain, problem, verbose=verbose, optimize=optimize)
        memo[key] = result
        if len(memo) > TRANSLATIONS_KEPT:
            memo.popitem(last=False)
        return result

    return pddl2sas


def _memo_parse(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A TatSu parse keyed by its text and rule name; callers get a private deep copy."""

    @lru_cache(maxsize=4096)
    def cached(text: str, rule_name: str) -> Any:
        return fn(text, rule_name=rule_name)

    @wraps(fn)
    def parse(text: str, rule_name: str = "start", **kwargs: Any) -> Any:
        if kwargs.get("trace"):  # debugging output wanted: do the real thing
            return fn(text, rule_name=rule_name, **kwargs)
        return copy.deepcopy(cached(text, rule_name))

    return parse


def _copy_context(context: dict[str, Any]) -> dict[str, Any]:
    """textgen.copy_context with the dicts copied and their (never mutated) values shared."""
    return {
        "state": context["state"],
        "facts": context["facts"],
        "variables": dict(context["variables"]),
        "mapping": dict(context["mapping"]),
        "entity_infos": context["entity_infos"],
    }


_free_libs: list[Any] = []


def _pooled(load_lib: Callable[[], Any]) -> Callable[[], Any]:
    @wraps(load_lib)
    def load() -> Any:
        return _free_libs.pop() if _free_libs else load_lib()

    return load


def release_lib(env: Any) -> None:
    """Give the fast-downward library copy of a closed textworld env (any wrapper of a PddlEnv) back
    for reuse; nothing may use that env afterwards. A no-op when the cache is off."""
    if not _installed:
        return
    while getattr(env, "_wrapped_env", None) is not None:
        env = env._wrapped_env
    lib = getattr(env, "downward_lib", None)
    if lib is not None:
        lib.cleanup()
        env.downward_lib = None
        _free_libs.append(lib)


def install() -> bool:
    """Patch the engine modules once per process; returns whether the cache is active."""
    global _installed
    if _installed or not enabled():
        return _installed
    import fast_downward
    from textworld.envs.pddl import textgen
    from textworld.logic import Rule

    fast_downward.pddl2sas = _memo_translation(fast_downward.pddl2sas)
    fast_downward.load_lib = _pooled(fast_downward.load_lib)
    textgen._parse_and_convert = _memo_parse(textgen._parse_and_convert)

    class _CachedRule(Rule):  # only textgen's view of Rule: condition strings parsed once
        parse_conjunctive_query = classmethod(lru_cache(maxsize=1024)(Rule.parse_conjunctive_query.__func__))

    textgen.Rule = _CachedRule
    textgen.copy_context = _copy_context
    _installed = True
    return True
