"""The child-to-parent channel takes only well-formed messages of a fixed shape and size."""

from __future__ import annotations

import io
import os
import struct

import torch

from autograder.core.channel import HEADER, MAGIC, FrameReader, encode_result, write_frame

JOBS = [("gelu", 2), ("rms_norm", 1)]


def _read(*chunks: bytes, max_result_bytes: int = 1 << 20) -> FrameReader:
    read_fd, write_fd = os.pipe()
    reader = FrameReader(read_fd, JOBS, max_result_bytes)
    reader.start()
    try:
        for chunk in chunks:
            os.write(write_fd, chunk)
    except BrokenPipeError:  # the reader stopped at a malformed frame and closed its end
        pass
    os.close(write_fd)
    reader.join(timeout=10)
    assert not reader.is_alive()
    return reader


def _frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind, len(payload)) + payload


def test_write_frame_writes_what_the_reader_takes() -> None:
    read_fd, write_fd = os.pipe()
    write_frame(write_fd, b"L", b"cell 2#0")
    os.close(write_fd)
    assert os.read(read_fd, 100) == _frame(b"L", b"cell 2#0")
    os.close(read_fd)


def _result(exercise: str = "gelu", n: int = 2, **changes: object) -> dict:
    result = {"exercise": exercise, "status": "ok", "message": "", "outputs": [torch.ones(2)] * n,
              "errors": [None] * n}  # fmt: skip
    result.update(changes)
    return result


def test_well_formed_messages_are_taken() -> None:
    reader = _read(
        _frame(b"L", b"cell 3#1"),
        _frame(b"S", struct.pack(">I", 0)),
        _frame(b"R", encode_result(0, _result())),
    )
    assert reader.error == "" and reader.loading == "cell 3#1" and reader.started == 0
    assert torch.equal(reader.results[0]["outputs"][1], torch.ones(2))


def test_a_statement_key_that_is_a_path_ends_the_conversation() -> None:
    reader = _read(_frame(b"L", b"/work/main/solutions/attention.py"), _frame(b"L", b"cell 1#0"))
    assert "malformed statement key" in reader.error and reader.loading is None


def test_an_oversized_message_is_refused_before_its_payload_is_read() -> None:
    header = b"LLMc" + b"R" + struct.pack(">I", 2**31 - 1)
    reader = _read(header, max_result_bytes=1000)
    assert "larger than 1004 bytes" in reader.error


def test_bytes_that_are_not_a_message_end_the_conversation() -> None:
    assert "not a message" in _read(b"not a frame at all, just text").error
    assert "cut short" in _read(_frame(b"L", b"cell 1#0")[:-2]).error
    assert "unknown kind" in _read(_frame(b"X", b"")).error


def test_job_indices_must_be_in_range() -> None:
    assert "out of range" in _read(_frame(b"S", struct.pack(">I", 2))).error
    assert "out of range" in _read(_frame(b"R", encode_result(7, _result()))).error


def test_results_must_have_the_shape_of_a_job_result() -> None:
    wrong_exercise = _read(_frame(b"R", encode_result(0, _result(exercise="rms_norm"))))
    assert "another exercise" in wrong_exercise.error
    too_few = _read(_frame(b"R", encode_result(0, _result(n=1))))
    assert "number of answers" in too_few.error
    extra_key = _read(_frame(b"R", encode_result(0, {**_result(), "score": 3})))
    assert "not a job result" in extra_key.error
    bad_status = _read(_frame(b"R", encode_result(0, _result(status="passed"))))
    assert "unknown status" in bad_status.error


class Sneaky:
    """Not plain data: unpickling it would run this module's code."""


def test_results_that_are_not_plain_data_are_refused() -> None:
    buf = io.BytesIO()
    torch.save({"x": Sneaky()}, buf)
    payload = struct.pack(">I", 0) + buf.getvalue()
    assert "cannot be read as plain data" in _read(_frame(b"R", payload)).error


def test_long_messages_are_cut_to_a_fixed_size() -> None:
    reader = _read(_frame(b"R", encode_result(0, _result(message="x" * 100_000))))
    assert reader.error == "" and len(reader.results[0]["message"]) == 4000
