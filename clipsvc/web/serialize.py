"""What every API's bodies share: the JSON provider (orjson, numpy arrays written directly) and the vector encoding
(`?encoding=`: JSON floats or base64). Each API builds its own bodies beside its views."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
from flask.json.provider import DefaultJSONProvider


class VectorJSON(DefaultJSONProvider):
    """Flask's JSON through orjson, which writes numpy arrays itself (no tolist(), the GIL held far shorter).

    A float32 is written as the shortest decimal that parses back to the same float32.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        if kwargs.get("sort_keys", self.sort_keys):
            option |= orjson.OPT_SORT_KEYS
        return orjson.dumps(obj, default=self.default, option=option).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def vector_json(vector: np.ndarray, encoding: str = "float") -> np.ndarray | str:
    """JSON numbers (the float32 array, written by VectorJSON), or base64 of little-endian float32 bytes (OpenAI's
    embeddings convention)."""
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return np.ascontiguousarray(vector, dtype=np.float32)
