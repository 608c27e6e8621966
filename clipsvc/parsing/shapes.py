"""What the JSON bodies' pydantic models share: strict types, unions told apart by their key, and the one place
that reads pydantic's complaint about a body (where, what) for the API's parser to word as our error.

Each body is declared once, as a model beside its parser (`json_items`, `openai_input`, `jina_docs`, `truss`):
the model checks the body's shape, and the OpenAPI document is generated from it (web.openapi.parts.model_schemas).
What depends on the server (the item limit, the model's name) and what the one image and text validators check
stay in the parsers; a model's descriptions may name the server's limits as `{max_items}`, filled in per server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from ..errors import ApiError

Model = TypeVar("Model", bound=BaseModel)
_TAGS: set[str] = set()  # every union member's tag, as `tag` made them


# A JSON object whose values are taken as sent, never converted ("5" is no number, true no 1), and whose unknown
# keys are refused. A list's items are TypedDicts with it (`__pydantic_config__`): half the cost of a model each.
STRICT = ConfigDict(strict=True, extra="forbid")


class Strict(BaseModel):
    """A body: its values taken as sent, its unknown keys refused (STRICT)."""

    model_config = STRICT


def _tag(name: str) -> str:
    """A union member's tag: pydantic puts it in an error's `loc`, and `checked` leaves it out."""
    _TAGS.add(f"<{name}>")
    return f"<{name}>"


def one_of(members: dict[str, object], kind: Callable[[object], str | None], description: str) -> object:
    """A union told apart by `kind(value)` (a key of `members`; None: none fits), so that one member's flaw is
    reported, not every member's; `description` is the document's."""
    tags = {name: _tag(name) for name in members}
    tagged = tuple(Annotated[member, Tag(tags[name])] for name, member in members.items())
    return Annotated[Union[tagged], Discriminator(lambda value: tags.get(kind(value)),  # noqa: UP007 - a tuple
                                                  custom_error_type="one_of", custom_error_message=description),
                     Field(description=description)]


def sole_key(value: object, keys: tuple[str, ...]) -> str | None:
    """The key of an object with exactly one key, if it is one of `keys`."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if key in keys else None
    return None


@dataclass(frozen=True)
class Flaw:
    """One thing pydantic found wrong: where (`loc`: keys and list positions, tags left out) and what (its type)."""

    loc: tuple[str | int, ...]
    kind: str

    def path(self, prefix: str = "") -> str:
        """The JSON path as our errors name it: `candidates[2].img_blob`, `[3]` for an item of a bare list;
        `prefix` is the path of what was checked."""
        path = prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in self.loc)
        return path.removeprefix(".")

    @property
    def index(self) -> int | None:
        """The position of the failing item in the first list on the path (None: the body itself, or no list)."""
        return next((part for part in self.loc if isinstance(part, int)), None)

    @property
    def key(self) -> str | int | None:
        return self.loc[-1] if self.loc else None


def wrong_body(body: object, expected: str) -> str:
    """The message for a body that is valid JSON but not the shape an endpoint takes: what it is, what to send."""
    return f"The body is {_json_kind(body)}: valid JSON, but not what this endpoint takes; send {expected}"


def _json_kind(value: object) -> str:
    if value is None or isinstance(value, bool):
        return f"JSON {'null' if value is None else str(value).lower()}"
    if isinstance(value, list):
        return "a JSON list" if value else "an empty JSON list"
    kinds = {str: "a JSON string", dict: "a JSON object"}
    return kinds.get(type(value), "a JSON number")


def checked(model: type[Model], body: object, refuse: Callable[[list[Flaw]], ApiError]) -> Model:
    """`body` as `model`, or the ApiError `refuse` words (or raises) from pydantic's flaws, in the order it found
    them."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        flaws = [Flaw(e["loc"] if e["type"] == "extra_forbidden" else tuple(p for p in e["loc"] if p not in _TAGS),
                      e["type"]) for e in errors]
        raise refuse(flaws) from None
