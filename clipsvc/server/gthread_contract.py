"""What clipsvc.server relies on inside gunicorn's gthread worker, declared once and checked at start-up.

ClipWorker (clipsvc.server.worker) overrides gthread's methods and reads its private state, ClientConn
(clipsvc.server.deadlines) subclasses its TConn, and gunicorn_errors swaps `gunicorn.util.write_error`. None of that
is gunicorn's public API: an upgrade that renames a method, reshapes its arguments or moves an attribute would not
fail, an override would just stop being called, and slow clients would hold the request threads again. So every
member relied on is listed here as gunicorn 27.0.1 has it, and clipsvc.server.worker calls enforce() before it
imports anything of gunicorn's: a mismatch stops start-up with one JSON line that names gunicorn's version and the
member (docs/deployment.md: running gunicorn's plain gthread worker instead).

Methods, functions and constructors are compared by `inspect.signature` (annotations aside). Instance attributes
exist only on a running worker, and making one in the master has side effects (a heartbeat file): they are checked
where gunicorn creates them, as `self.<name> = ...` in the source of the method named (or the same method of a base
class), read with `ast`. A call that a swap depends on is checked in the source of its caller the same way. Where
gunicorn's source cannot be read the member counts as a mismatch: the check fails closed.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import logging
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from .logs import write_now

log = logging.getLogger(__name__)

GTHREAD = "gunicorn.workers.gthread:ThreadWorker"
BASE = "gunicorn.workers.base:Worker"
TCONN = "gunicorn.workers.gthread:TConn"
UTIL = "gunicorn.util"
ON_MISMATCH = "docs/deployment.md, 'Running gunicorn's plain gthread worker'"


class Kind(enum.Enum):
    METHOD = "method"  # a method of the class (inherited counts), with this signature
    FUNCTION = "function"  # a module's function, with this signature
    CLASS = "class"  # a class whose constructor takes this signature
    ATTRIBUTE = "attribute"  # set as `self.<name> = ...` in the method `expected` of the class or a base
    CALL = "call"  # the method `name` calls `expected` (a dotted name, as written in its source)


@dataclass(frozen=True)
class Member:
    """One thing of gunicorn's that clipsvc.server relies on, as gunicorn 27.0.1 has it."""

    owner: str  # "module" or "module:Class"
    name: str
    kind: Kind
    expected: str  # the signature; for ATTRIBUTE the method that sets it; for CALL the callee
    why: str

    @property
    def label(self) -> str:
        return f"{self.owner.replace(':', '.')}.{self.name}"


def _method(name: str, signature: str, why: str, owner: str = GTHREAD) -> Member:
    return Member(owner, name, Kind.METHOD, signature, why)


CONTRACT: tuple[Member, ...] = (
    # ClipWorker's overrides: a renamed or reshaped one would silently stop being called.
    _method("accept", "(self, listener)", "new connections parked, and accepted by load"),
    _method("enqueue_req", "(self, conn)", "counting the request threads in use"),
    _method("finish_request", "(self, conn, fs)", "counting the request threads in use"),
    _method("handle", "(self, conn)", "the header deadline"),
    _method("handle_request", "(self, req, conn)", "the body deadline and minimum rate"),
    _method("handle_error", "(self, req, client, addr, exc)", "the JSON 408 request_timeout"),
    _method("wait_for_and_dispatch_events", "(self, timeout)", "looking again soon after deferring to a worker"),
    _method("set_accept_enabled", "(self, enabled)", "listening only with a free request thread"),
    _method("notify", "(self)", "the heartbeat withheld during a long forward pass"),
    _method("load_wsgi", "(self)", "counting a request off once its reply is computed"),
    _method("handle_exit", "(self, sig, frame)", "stop_listening at SIGTERM"),
    # gthread's own methods that ClipWorker calls or leaves to gthread's loop.
    _method("on_pending_socket_readable", "(self, conn, client)", "a parked connection handed to a thread"),
    _method("murder_pending", "(self)", "closing parked connections at their header deadline"),
    Member(GTHREAD, "run", Kind.CALL, "self.murder_pending", "closing parked connections at their header deadline"),
    _method("defer", "(self, callback, *args)", "stop_listening run on the main thread",
            owner="gunicorn.workers.gthread:PollableMethodQueue"),
    # Private state ClipWorker reads and writes.
    Member(GTHREAD, "pending_conns", Kind.ATTRIBUTE, "__init__", "parked connections"),
    Member(GTHREAD, "nr_conns", Kind.ATTRIBUTE, "__init__", "parked connections"),
    Member(GTHREAD, "poller", Kind.ATTRIBUTE, "init_process", "parked connections"),
    Member(GTHREAD, "method_queue", Kind.ATTRIBUTE, "__init__", "stop_listening run on the main thread"),
    Member(GTHREAD, "sockets", Kind.ATTRIBUTE, "__init__", "stop_listening closes this worker's copies"),
    Member(GTHREAD, "wsgi", Kind.ATTRIBUTE, "load_wsgi", "counting a request off once its reply is computed"),
    Member(GTHREAD, "cfg", Kind.ATTRIBUTE, "__init__", "threads and backlog"),
    Member(GTHREAD, "log", Kind.ATTRIBUTE, "__init__", "the worker's log lines"),
    Member(GTHREAD, "pid", Kind.ATTRIBUTE, "__init__", "the worker's row in the worker table"),
    # The connection ClientConn extends (clipsvc.server.deadlines).
    Member("gunicorn.workers.gthread", "TConn", Kind.CLASS, "(cfg, sock, client, server)",
           "ClientConn, the deadlines' connection"),
    _method("close", "(self, graceful=False)", "ClientConn's close after its lingering", owner=TCONN),
    Member(TCONN, "sock", Kind.ATTRIBUTE, "__init__", "the deadlines' socket"),
    Member(TCONN, "timeout", Kind.ATTRIBUTE, "__init__", "a parked connection's header deadline"),
    # gunicorn's own error replies, swapped for JSON (clipsvc.server.gunicorn_errors).
    Member(UTIL, "write_error", Kind.FUNCTION, "(sock, status_int, reason, mesg)", "gunicorn's errors as JSON"),
    Member(BASE, "handle_error", Kind.CALL, "util.write_error", "gunicorn's errors as JSON"),
    Member(UTIL, "write_nonblock", Kind.FUNCTION, "(sock, data, chunked=False)", "writing our JSON error replies"),
    Member(UTIL, "close", Kind.FUNCTION, "(sock)", "ClientConn's close after its lingering"),
)


@dataclass(frozen=True)
class Mismatch:
    """A member that is not as the contract says."""

    member: Member
    found: str

    def as_dict(self, version: str) -> dict:
        return {"gunicorn_version": version, "member": self.member.label, "kind": self.member.kind.value,
                "expected": self.member.expected, "found": self.found, "relied_on_for": self.member.why}


def mismatches(contract: Iterable[Member] = CONTRACT) -> list[Mismatch]:
    """Every member of `contract` that the installed gunicorn does not have as declared."""
    found = []
    for member in contract:
        problem = _problem(member)
        if problem is not None:
            found.append(Mismatch(member, problem))
    return found


def enforce(contract: Iterable[Member] = CONTRACT) -> None:
    """Stop start-up (exit status 1) with one JSON line on stderr if gunicorn breaks the contract.

    Raised as SystemExit, which gunicorn lets through while it loads the worker class (other exceptions become a
    plain-text traceback). The line is written straight to the real stderr, configured logging or not."""
    broken = mismatches(contract)
    if broken:
        _stop(broken)


def _stop(broken: list[Mismatch]) -> NoReturn:
    """The first mismatch as one JSON line (the others named in it), then exit status 1."""
    version = _gunicorn_version()
    first = broken[0]
    write_now(log.name, f"gunicorn {version} does not have what clipsvc's worker relies on: {first.member.label} "
              f"({first.member.kind.value}): expected {first.member.expected}, found: {first.found}; "
              f"start-up stopped (see {ON_MISMATCH})",
              event="gunicorn_contract_broken", **first.as_dict(version),
              other_members=[m.member.label for m in broken[1:]])
    raise SystemExit(1)


def _gunicorn_version() -> str:
    try:
        return importlib.import_module("gunicorn").__version__
    except (ImportError, AttributeError):
        return "unknown"


def _problem(member: Member) -> str | None:
    """What is wrong with `member` in the installed gunicorn, in a few words; None when it is as declared."""
    try:
        owner = _resolve(member.owner)
    except (ImportError, AttributeError) as exc:
        return f"{member.owner.replace(':', '.')} missing ({exc})"
    if member.kind is Kind.ATTRIBUTE:
        return _attribute_problem(owner, member)
    target = getattr(owner, member.name, None)
    if target is None:
        return "missing"
    if member.kind is Kind.CALL:
        return _call_problem(target, member.expected)
    if not callable(target):
        return f"not callable ({type(target).__name__})"
    try:
        signature = _bare_signature(target)
    except (TypeError, ValueError) as exc:
        return f"no readable signature ({exc})"
    return None if signature == member.expected else signature


def _resolve(owner: str):
    module_name, _, qualname = owner.partition(":")
    target = importlib.import_module(module_name)
    for part in filter(None, qualname.split(".")):
        target = getattr(target, part)
    return target


def _bare_signature(function) -> str:
    """The signature as inspect writes it, without annotations: gunicorn has none, our replacements do."""
    signature = inspect.signature(function)
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=inspect.Signature.empty))


def _function_tree(function) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The function's own definition, parsed from its source; None where the source cannot be read."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None
    node = ast.parse(source).body[0]
    return node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None


def _attribute_problem(cls: type, member: Member) -> str | None:
    """Whether `member.expected` (a method) of `cls` or of a base sets `self.<member.name>`."""
    methods = [vars(base)[member.expected] for base in inspect.getmro(cls)
               if base is not object and member.expected in vars(base)]
    if not methods:
        return f"no method {member.expected}"
    for function in methods:
        tree = _function_tree(function)
        if tree is None:
            return f"source of {function.__qualname__} unreadable"
        if member.name in _assigned_attributes(tree):
            return None
    return f"not set in {', '.join(f.__qualname__ for f in methods)}"


def _assigned_attributes(tree: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """The `self.<name>` a method assigns (self being its first parameter, whatever its name)."""
    if not tree.args.args:
        return set()
    me = tree.args.args[0].arg
    names = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else []
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) and leaf.value.id == me:
                    names.add(leaf.attr)
    return names


def _call_problem(function, callee: str) -> str | None:
    """Whether `function`'s source calls `callee`, spelt as in the contract (e.g. `util.write_error`)."""
    tree = _function_tree(function)
    if tree is None:
        return f"source of {getattr(function, '__qualname__', function)} unreadable"
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return None if callee in calls else f"no call to {callee}"
