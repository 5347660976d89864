"""Splitting a watch stream into its lines (one JSON event each) with a bound on the bytes held.

A member cluster decides how long a watch line is; the daemon decides how much of one it holds. Pure: no I/O.
"""

from __future__ import annotations


class LineTooLong(ValueError):
    def __init__(self, size: int) -> None:
        super().__init__(f"line of {size} bytes")
        self.size = size


class Lines:
    """Splits a stream into newline-terminated lines, holding at most `limit` bytes of an unfinished line.

    Linear: the unfinished line is gathered in one bytearray (appends are amortised O(1)), and each chunk is
    split once, by bytes.split, into the lines it completes. Blank lines are skipped."""

    __slots__ = ("_buf", "_limit")

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, chunk: bytes) -> list[bytes]:
        buf, limit = self._buf, self._limit
        nl = chunk.find(b"\n")
        if nl == len(chunk) - 1 and not buf and nl <= limit:  # one whole event: the usual chunk of a watch
            return [chunk[:nl]] if nl and not chunk.isspace() else []
        if buf:
            if nl < 0:
                if len(buf) + len(chunk) > limit:
                    raise LineTooLong(len(buf) + len(chunk))
                buf += chunk
                return []
            if len(buf) + nl > limit:
                raise LineTooLong(len(buf) + nl)
            buf += memoryview(chunk)[:nl]
            parts = chunk[nl + 1:].split(b"\n")
            parts.insert(0, bytes(buf))
            buf.clear()
        else:
            parts = chunk.split(b"\n")
        rest = parts.pop()  # after the last newline: the start of the next line
        if rest:
            if len(rest) > limit:
                raise LineTooLong(len(rest))
            buf += rest
        if len(chunk) > limit:
            longest = max(map(len, parts), default=0)
            if longest > limit:
                raise LineTooLong(longest)
        return [p for p in parts if p and not p.isspace()]

    def rest(self) -> bytes:
        """What followed the last newline, if it is not blank (a stream may end without one)."""
        line = bytes(self._buf)
        self._buf.clear()
        return line if line.strip() else b""
