"""The package's shape: layers import downward only, the two services stay apart, modules stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "clipsvc"
# Lower layers never import higher ones. parsing and the encoder share a layer and never import each other:
# data meets the model only in web (scoring). The standin shim sits above all; the package's __init__ holds only
# __version__, which every layer may read.
LAYERS = {"settings": 0, "errors": 1, "picture": 1, "parsing": 2, "encoder": 2, "server": 3, "web": 4}
# Third-party packages a layer must not touch: parsing is pure, the encoder knows nothing of HTTP.
FORBIDDEN = {"parsing": {"flask", "torch", "transformers"}, "encoder": {"flask", "werkzeug", "gunicorn"},
             "settings": {"flask", "werkzeug", "torch"}, "errors": {"flask", "torch"}, "picture": {"flask", "torch"},
             "client": {"flask", "werkzeug", "gunicorn", "torch", "transformers", "PIL", "prometheus_client"}}
# An alarm, not a squeeze (STYLE.md: split at a second concern, not at a line count): a module past it is read
# again to see whether it holds two. A cap at 400 had split the settings from their own docs.
MAX_LINES = 600


def modules() -> dict[str, Path]:
    """Dotted name under clipsvc (e.g. `parsing.form`) -> file; packages' __init__ as the package's name."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every module this one imports, as dotted names: clipsvc's without the prefix, others' top-level name."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.removeprefix("clipsvc.") if alias.name.startswith("clipsvc.")
                      else alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            elif (node.module or "").startswith("clipsvc"):
                base = node.module.removeprefix("clipsvc").lstrip(".")
            else:
                found.add(node.module.split(".")[0])
                continue
            known = modules()
            found |= {f"{base}.{alias.name}".lstrip(".") if f"{base}.{alias.name}".lstrip(".") in known else base
                      for alias in node.names}
    return found


def layer(name: str) -> int | None:
    """`` is the package itself, which holds only `__version__` for everyone."""
    return -1 if name == "" else LAYERS.get(name.split(".")[0])


INTERNAL = {name: {dep for dep in imports(name, path) if dep in modules() or dep == ""}
            for name, path in modules().items()}


@pytest.mark.parametrize("name", sorted(n for n in INTERNAL if layer(n) is not None))
def test_imports_run_downward(name):
    upward = {dep for dep in INTERNAL[name] if dep.split(".")[0] != name.split(".")[0]
              and (layer(dep) is None or layer(dep) >= layer(name))}
    assert upward == set(), f"clipsvc.{name} imports a layer at or above its own"


@pytest.mark.parametrize("top, banned", sorted(FORBIDDEN.items()))
def test_layers_keep_off_libraries_they_must_not_know(top, banned):
    for name, path in modules().items():
        if name.split(".")[0] == top:
            assert imports(name, path) & banned == set(), f"clipsvc.{name} imports {imports(name, path) & banned}"


def test_there_are_no_import_cycles():
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "open":
            raise AssertionError("import cycle: " + " -> ".join((*trail, name)))
        if state.get(name) == "done":
            return
        state[name] = "open"
        for dep in INTERNAL.get(name, ()):
            if dep and dep != name:
                visit(dep, (*trail, name))
        state[name] = "done"

    for name in INTERNAL:
        if name:  # clipsvc/__init__ only names the packages
            visit(name, ())


def serves_routes(path: Path) -> bool:
    """A view module: it makes a Blueprint (one per API, or per group of pages)."""
    return any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Blueprint"
               for node in ast.walk(ast.parse(path.read_text())))


VIEWS = {name for name, path in modules().items() if serves_routes(path)}


def test_the_apis_each_have_a_view_module():
    assert {"web.clip", "web.bentoml", "web.truss", "web.jina", "web.openai"} <= VIEWS


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_no_view_imports_another(name):
    """What views share lives in modules that serve no route (web.context, scoring, serialize, envelope)."""
    assert INTERNAL[name] & VIEWS == set(), f"clipsvc.{name} imports another view module"


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_are_small_enough_to_read_in_one_sitting(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"clipsvc.{name} has {lines} lines: does it hold two concerns? If not, raise the alarm"


def test_ls_shows_the_design_cards_parts():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == \
        {"parsing", "encoder", "server", "web", "client"}


@pytest.mark.parametrize("name", sorted(n for n in modules() if n.split(".")[0] == "client"))
def test_the_client_stands_alone(name):
    """The client is installed on its own (requirements-client.txt): it imports nothing of the service."""
    assert {dep for dep in INTERNAL[name] if dep.split(".")[0] != "client"} == set()


# The factory registers every blueprint: of web's modules that serve no route, the one that may import the views.
FACTORY = "web.app"


@pytest.mark.parametrize("name", sorted(n for n in INTERNAL if n.split(".")[0] == "web" and n not in VIEWS | {FACTORY}))
def test_no_module_of_web_but_the_factory_imports_a_view(name):
    """Views know the rest, not the other way round: each API declares its error shape beside its views
    (web.context.declare_error_shape) and the one handler reads the declarations; the OpenAPI document reads the
    routes from the app, and the request bodies from their models (parsing)."""
    assert INTERNAL[name] & VIEWS == set(), f"clipsvc.{name} imports a view module"
