"""The gthread contract: the installed gunicorn keeps it, a changed member is named, and start-up stops on one."""

from __future__ import annotations

import json
from collections import deque

import gunicorn
import pytest
from gunicorn import util
from gunicorn.workers import base, gthread
from gunicorn.workers.gthread import TConn, ThreadWorker

from clipsvc.server.gthread_contract import CONTRACT, Kind, Member, enforce, mismatches
from testkit.server import gunicorn as serve_gunicorn

GTHREAD = "gunicorn.workers.gthread.ThreadWorker"


def test_the_installed_gunicorn_keeps_the_contract():
    assert mismatches() == []


def test_each_member_is_declared_once():
    assert len({(m.owner, m.name, m.kind) for m in CONTRACT}) == len(CONTRACT)


def accept_with_backlog(self, listener, backlog): ...


def handle_request_with_deadline(self, req, conn, deadline=None): ...


def set_accept_renamed(self, accepting): ...


def init_without_pending_conns(self, *args, **kwargs):
    base.Worker.__init__(self, *args, **kwargs)
    self.nr_conns = 0
    self.method_queue = gthread.PollableMethodQueue()
    self.waiting_conns = deque()  # pending_conns, renamed


def write_error_with_headers(sock, status_int, reason, mesg, headers=None): ...


def handle_error_via_renderer(self, req, client, addr, exc):
    util.render_error(client, 400, "Bad Request", str(exc))  # no longer util.write_error: the swap is bypassed


def tconn_init_with_listener(self, cfg, sock, client, server, listener):
    self.sock, self.timeout = sock, None


# (what changes: owner, name, replacement or None to remove it), the member named first, and what was found.
CHANGES = [
    pytest.param((ThreadWorker, "accept", None), f"{GTHREAD}.accept", "missing", id="method removed"),
    pytest.param((ThreadWorker, "accept", accept_with_backlog), f"{GTHREAD}.accept",
                 "(self, listener, backlog)", id="parameter added"),
    pytest.param((ThreadWorker, "handle_request", handle_request_with_deadline), f"{GTHREAD}.handle_request",
                 "(self, req, conn, deadline=None)", id="optional parameter added"),
    pytest.param((ThreadWorker, "set_accept_enabled", set_accept_renamed), f"{GTHREAD}.set_accept_enabled",
                 "(self, accepting)", id="parameter renamed"),
    pytest.param((ThreadWorker, "on_pending_socket_readable", None), f"{GTHREAD}.on_pending_socket_readable",
                 "missing", id="private method removed"),
    pytest.param((ThreadWorker, "__init__", init_without_pending_conns), f"{GTHREAD}.pending_conns",
                 "not set in", id="attribute renamed"),
    pytest.param((util, "write_error", write_error_with_headers), "gunicorn.util.write_error",
                 "(sock, status_int, reason, mesg, headers=None)", id="write_error changed"),
    pytest.param((base.Worker, "handle_error", handle_error_via_renderer), "gunicorn.workers.base.Worker.handle_error",
                 "no call to util.write_error", id="write_error no longer called"),
    pytest.param((TConn, "__init__", tconn_init_with_listener), "gunicorn.workers.gthread.TConn",
                 "(cfg, sock, client, server, listener)", id="TConn constructor changed"),
    pytest.param((gthread, "TConn", None), "gunicorn.workers.gthread.TConn", "missing", id="TConn removed"),
]


def change(monkeypatch: pytest.MonkeyPatch, owner, name: str, replacement) -> None:
    if replacement is None:
        monkeypatch.delattr(owner, name)
    else:
        monkeypatch.setattr(owner, name, replacement)


@pytest.mark.parametrize("changed, member, found", CHANGES)
def test_a_changed_member_is_named(monkeypatch, changed, member, found):
    change(monkeypatch, *changed)
    broken = mismatches()
    assert broken, "the change went unnoticed"
    assert broken[0].member.label == member and found in broken[0].found


@pytest.mark.parametrize("changed, member, found", CHANGES[:3])
def test_enforce_stops_with_one_json_line_naming_the_version_and_the_member(monkeypatch, capfd, changed, member,
                                                                             found):
    change(monkeypatch, *changed)
    with pytest.raises(SystemExit) as stopped:
        enforce()
    assert stopped.value.code == 1
    out, err = capfd.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    line = json.loads(err)
    assert line["level"] == "error" and line["event"] == "gunicorn_contract_broken"
    assert line["gunicorn_version"] == gunicorn.__version__ and gunicorn.__version__ in line["message"]
    assert line["member"] == member and member in line["message"] and found in line["found"]
    assert line["expected"] == next(m.expected for m in CONTRACT if m.label == member)


def test_enforce_is_silent_when_the_contract_holds(capfd):
    assert enforce() is None
    assert capfd.readouterr() == ("", "")


# The check itself, on small classes of its own: each kind, kept and broken.
class Base:
    def __init__(self, sockets):
        self.sockets = sockets

    def serve(self, conn, timeout=1.0):
        self.reply(conn)

    def reply(self, conn): ...


class Worker(Base):
    def __init__(self, sockets):
        super().__init__(sockets)
        self.pending, (self.first, self.second) = [], (1, 2)
        self.count: int = 0


SOURCELESS: dict = {}
exec("def sourceless(self):\n    self.hidden = 1\n", SOURCELESS)  # no file: inspect cannot read its source
Worker.sourceless = SOURCELESS["sourceless"]

OWNER = f"{__name__}:Worker"


@pytest.mark.parametrize("member, found", [
    (Member(OWNER, "serve", Kind.METHOD, "(self, conn, timeout=1.0)", ""), None),
    (Member(OWNER, "serve", Kind.METHOD, "(self, conn)", ""), "(self, conn, timeout=1.0)"),
    (Member(OWNER, "served", Kind.METHOD, "(self, conn)", ""), "missing"),
    (Member(OWNER, "pending", Kind.METHOD, "(self)", ""), "missing"),  # an instance attribute is not a method
    (Member(__name__, "Worker", Kind.CLASS, "(sockets)", ""), None),
    (Member(__name__, "Worker", Kind.CLASS, "(sockets, backlog)", ""), "(sockets)"),
    (Member(f"{__name__}:Nowhere", "serve", Kind.METHOD, "(self)", ""), f"{__name__}.Nowhere missing"),
    (Member("gunicorn.workers.nowhere", "f", Kind.FUNCTION, "()", ""), "gunicorn.workers.nowhere missing"),
    (Member(OWNER, "pending", Kind.ATTRIBUTE, "__init__", ""), None),
    (Member(OWNER, "second", Kind.ATTRIBUTE, "__init__", ""), None),  # unpacked into
    (Member(OWNER, "count", Kind.ATTRIBUTE, "__init__", ""), None),  # annotated
    (Member(OWNER, "sockets", Kind.ATTRIBUTE, "__init__", ""), None),  # set by the base's method of that name
    (Member(OWNER, "backlog", Kind.ATTRIBUTE, "__init__", ""), "not set in Worker.__init__, Base.__init__"),
    (Member(OWNER, "pending", Kind.ATTRIBUTE, "start", ""), "no method start"),
    (Member(OWNER, "hidden", Kind.ATTRIBUTE, "sourceless", ""), "source of sourceless unreadable"),  # fails closed
    (Member(OWNER, "serve", Kind.CALL, "self.reply", ""), None),
    (Member(OWNER, "serve", Kind.CALL, "self.write", ""), "no call to self.write"),
    (Member(OWNER, "sourceless", Kind.CALL, "self.reply", ""), "source of sourceless unreadable"),
])
def test_the_check_on_each_kind(member, found):
    broken = mismatches([member])
    if found is None:
        assert broken == []
    else:
        assert len(broken) == 1 and broken[0].found.startswith(found), broken


def test_every_problem_is_reported_and_the_first_is_named():
    contract = [Member(OWNER, "serve", Kind.METHOD, "(self)", ""), Member(OWNER, "gone", Kind.METHOD, "(self)", "")]
    assert [m.member.name for m in mismatches(contract)] == ["serve", "gone"]


# Real gunicorn, its gthread changed before it imports the worker class (a sitecustomize on PYTHONPATH).
SHIMS = {
    "handle_request": ("def handle_request(self, req, conn, deadline=None): ...\n"
                       "gthread.ThreadWorker.handle_request = handle_request\n", f"{GTHREAD}.handle_request"),
    # gunicorn.conf.py must not import TConn either (it used to, through clipsvc.server.deadlines): a plain-text
    # "Failed to read config file" traceback would come first.
    "TConn": ("del gthread.TConn\n", "gunicorn.workers.gthread.TConn"),
}


@pytest.mark.parametrize("shim", SHIMS)
def test_a_real_start_against_a_changed_gthread_stops_with_one_json_line(model_dir, tmp_path, shim):
    source, member = SHIMS[shim]
    (tmp_path / "shim").mkdir()
    (tmp_path / "shim" / "sitecustomize.py").write_text("from gunicorn.workers import gthread\n" + source)
    log = tmp_path / "log"
    with serve_gunicorn(model_dir, log, ready=False, PYTHONPATH=str(tmp_path / "shim")) as server:
        assert server.process.wait(60) == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    line = json.loads(lines[0])
    assert line["event"] == "gunicorn_contract_broken" and line["member"] == member
    assert line["gunicorn_version"] == gunicorn.__version__

