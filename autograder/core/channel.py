"""The one way a grading child talks to its parent: framed messages on a pipe.

The child (:mod:`autograder.core.child`) writes three kinds of message to a file
descriptor the parent gave it; the parent (:mod:`autograder.core.sandbox`) reads
them with :class:`FrameReader`. Nothing else crosses from the child to the
parent: no file the child names, no path it chose. Every message has a fixed
shape and a size limit, checked before it is used:

- ``L`` loading: the key of the statement being loaded (``cell 3#1`` or
  ``NAME.py#4``, at most :data:`MAX_KEY_BYTES` bytes of ASCII);
- ``S`` started: the index of the job being run (4 bytes, below the job count);
- ``R`` result: the job's index (4 bytes), then its :class:`JobResult` as
  ``torch.save`` bytes (at most ``max_result_bytes``), read back with
  ``weights_only=True`` and checked field by field.

- ``Q`` question (only when the parent offers answers, see :func:`ask`): the name
  of one of the student's functions that the parent answers for (the reference
  in its place, when grading an exercise again without the student's failing
  dependency), and its arguments as ``torch.save`` bytes; the parent replies on
  a second pipe with an ``A`` frame: ``{"value": ...}`` or ``{"error": "..."}``.
  The reference's code never enters the child: only its answers do.

Student code runs in the child and can write to the same descriptor, so a frame
may be forged: a forged result can only claim answers the student could have
returned anyway, and a malformed frame ends the conversation (the exercise
running at the time fails, as for a crash).
"""

from __future__ import annotations

import io
import os
import re
import struct
import threading
from collections.abc import Callable
from typing import Any

MAGIC = b"LLMc"
HEADER = struct.Struct(">4scI")  # magic, kind, payload length
MAX_KEY_BYTES = 200
MAX_MESSAGE_CHARS = 4000  # a result's message and each error, as shown to the student
KEY_PATTERN = re.compile(r"(cell [0-9]{1,6}|[A-Za-z0-9_.\- ]{1,120}\.py)#[0-9]{1,6}")
STATUSES = ("ok", "missing", "not_implemented", "unreadable")


def write_frame(fd: int, kind: bytes, payload: bytes) -> None:
    """Write one whole frame to ``fd`` (blocking until the parent has room)."""
    data = HEADER.pack(MAGIC, kind, len(payload)) + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def encode_result(index: int, result: Any) -> bytes:
    """``R`` payload: the job index and the result, as torch.save bytes."""
    return struct.pack(">I", index) + encode_plain(result)


class ProtocolError(Exception):
    """The child sent something that is not a well-formed message."""


def _check_result(result: Any, exercise: str, cases: int) -> dict[str, Any]:
    """The result if it has exactly the shape of a JobResult for ``exercise``, else raise."""
    keys = {"exercise", "status", "message", "outputs", "errors"}
    if not isinstance(result, dict) or set(result) != keys:
        raise ProtocolError("a result that is not a job result")
    if result["exercise"] != exercise or result["status"] not in STATUSES:
        raise ProtocolError("a result for another exercise, or with an unknown status")
    if not isinstance(result["message"], str):
        raise ProtocolError("a result whose message is not text")
    outputs, errors = result["outputs"], result["errors"]
    if not isinstance(outputs, list) or not isinstance(errors, list):
        raise ProtocolError("a result without lists of outputs and errors")
    if result["status"] == "ok" and not (len(outputs) == len(errors) == cases):
        raise ProtocolError("a result with another number of answers than cases")
    if len(outputs) > cases or len(errors) > cases:
        raise ProtocolError("a result with more answers than cases")
    if not all(e is None or isinstance(e, str) for e in errors):
        raise ProtocolError("a result whose errors are not text")
    result["message"] = result["message"][:MAX_MESSAGE_CHARS]
    result["errors"] = [e if e is None else e[:MAX_MESSAGE_CHARS] for e in errors]
    return result


class FrameReader(threading.Thread):
    """Reads a child's frames until end of file or the first malformed one.

    ``jobs`` is the list of ``(exercise, number of cases)`` the child was given.
    What has arrived is in ``loading`` (the last key), ``started`` (the last job
    index), ``results`` (index to result); ``error`` says why reading stopped
    early, if it did. ``on_frame`` is called after each well-formed frame.
    """

    def __init__(
        self,
        fd: int,
        jobs: list[tuple[str, int]],
        max_result_bytes: int,
        on_frame: Callable[[], None] | None = None,
        answer: Callable[[bytes], bytes] | None = None,
        reply_fd: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.fd, self.jobs, self.max_result_bytes = fd, jobs, max_result_bytes
        self.on_frame = on_frame
        self.answer, self.reply_fd = answer, reply_fd
        self.loading: str | None = None
        self.started: int | None = None
        self.results: dict[int, dict[str, Any]] = {}
        self.error = ""
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while True:
                header = read_exact(self.fd, HEADER.size)
                if header is None:
                    return
                magic, kind, length = HEADER.unpack(header)
                if magic != MAGIC:
                    raise ProtocolError("bytes that are not a message")
                limits = {b"L": MAX_KEY_BYTES, b"S": 4, b"R": self.max_result_bytes + 4}
                if self.answer is not None:
                    limits[b"Q"] = self.max_result_bytes
                limit = limits.get(kind)
                if limit is None:
                    raise ProtocolError("a message of an unknown kind")
                if length > limit:
                    raise ProtocolError(f"a message larger than {limit} bytes")
                payload = read_exact(self.fd, length)
                if payload is None:
                    raise ProtocolError("a message cut short")
                self._accept(kind, payload)
                if self.on_frame is not None:
                    self.on_frame()
        except ProtocolError as exc:
            self.error = f"the grading process sent {exc}"
        except OSError as exc:  # pragma: no cover - the pipe itself failed
            self.error = f"the grading process's channel failed: {exc}"
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass

    def _accept(self, kind: bytes, payload: bytes) -> None:
        if kind == b"Q":
            assert self.answer is not None and self.reply_fd is not None
            write_frame(self.reply_fd, b"A", self.answer(payload))
            return
        if kind == b"L":
            try:
                key = payload.decode("ascii")
            except UnicodeDecodeError:
                raise ProtocolError("a statement key that is not ASCII") from None
            if not KEY_PATTERN.fullmatch(key):
                raise ProtocolError("a malformed statement key")
            with self._lock:
                self.loading = key
            return
        index = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else -1
        if not 0 <= index < len(self.jobs):
            raise ProtocolError("a job index out of range")
        if kind == b"S":
            if len(payload) != 4:
                raise ProtocolError("a malformed start message")
            with self._lock:
                self.started = index
            return

        try:
            result = decode_plain(payload[4:])
        except Exception:  # noqa: BLE001 - whatever the bytes hold, it is not a result
            raise ProtocolError("a result that cannot be read as plain data") from None
        exercise, cases = self.jobs[index]
        checked = _check_result(result, exercise, cases)
        with self._lock:
            self.results[index] = checked

    def snapshot(self) -> tuple[str | None, int | None, int]:
        """(last loading key, last started job, number of results) at this moment."""
        with self._lock:
            return self.loading, self.started, len(self.results)


def encode_plain(value: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(value, buf)
    return buf.getvalue()


def decode_plain(payload: bytes) -> Any:
    """Plain data (tensors, numbers, strings, lists, dicts) from ``torch.save`` bytes."""
    import torch

    return torch.load(io.BytesIO(payload), weights_only=True)


def read_exact(fd: int, n: int) -> bytes | None:
    """Exactly ``n`` bytes from ``fd``, or None when it ends first."""
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, limit: int) -> tuple[bytes, bytes]:
    header = read_exact(fd, HEADER.size)
    if header is None:
        raise ProtocolError("the answer was cut short")
    magic, kind, length = HEADER.unpack(header)
    if magic != MAGIC or length > limit:
        raise ProtocolError("a malformed answer")
    payload = read_exact(fd, length)
    if payload is None:
        raise ProtocolError("the answer was cut short")
    return kind, payload


def ask(out_fd: int, in_fd: int, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The child's side of a question: the parent's answer for ``name(*args, **kwargs)``.

    Raises RuntimeError with the parent's message when the answer is an error.
    """
    write_frame(out_fd, b"Q", encode_plain({"name": name, "args": args, "kwargs": kwargs}))
    kind, payload = _read_frame(in_fd, 1 << 30)
    reply = decode_plain(payload) if kind == b"A" else {"error": "no answer"}
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply["value"]
