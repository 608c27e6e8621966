"""multipart/form-data written byte by byte: the parts no client library writes (no name, odd filename*=,
repeated boundaries), for fuzzing the endpoint with what hostile and clumsy clients send."""

from __future__ import annotations

from dataclasses import dataclass

BOUNDARY = "fuzz-b0undary"


@dataclass(frozen=True)
class Part:
    """One part: its name (None: no name parameter at all), its filename parameter as written, its bytes."""

    name: str | None
    value: bytes
    filename: str | None = None  # e.g. 'filename="a.jpg"' or "filename*=UTF-8''%ff" (None: a plain field)
    star_name: bool = False  # the name as RFC 2231's name*=UTF-8''... instead of name="..."
    repeat_boundary: bool = False  # an extra, empty boundary line before this part

    def disposition(self) -> bytes:
        params = ["form-data"]
        if self.name is not None:
            if self.star_name:
                params.append("name*=UTF-8''" + "".join(f"%{b:02X}" for b in self.name.encode()))
            else:
                params.append(f'name="{self.name}"')
        if self.filename is not None:
            params.append(self.filename)
        return ("Content-Disposition: " + "; ".join(params)).encode("utf-8", "surrogatepass")


def multipart_body(parts: list[Part], boundary: str = BOUNDARY, preamble: bytes = b"", epilogue: bytes = b"",
                   closed: bool = True) -> tuple[bytes, str]:
    """The body and its Content-Type."""
    dash = b"--" + boundary.encode()
    chunks = [preamble + dash] if preamble else [dash]
    for part in parts:
        if part.repeat_boundary:
            chunks.append(b"\r\n" + dash)
        content_type = b"\r\nContent-Type: application/octet-stream" if part.filename is not None else b""
        chunks.append(b"\r\n" + part.disposition() + content_type + b"\r\n\r\n" + part.value + b"\r\n" + dash)
    chunks.append((b"--\r\n" + epilogue) if closed else b"\r\n")
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"
