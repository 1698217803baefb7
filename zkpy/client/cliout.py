"""The terminal the CLI writes to: stdout and stderr, one writer at a time, and aware of
a prompt that the interactive shell may be showing while an event arrives."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO


class Screen:
    """Serialises writes from the event loop thread and the shell thread.

    While the shell waits for a line (`prompt` is set), asynchronous output (watch
    events, state changes) erases the prompt line, prints, and draws the prompt and the
    text typed so far again, so that typing is not lost in the noise.
    """

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.stdout = out or sys.stdout
        self.stderr = err or sys.stderr
        self._lock = threading.Lock()
        self.prompt: Callable[[], str] | None = None
        self.typed: Callable[[], str] = lambda: ""

    def out(self, text: str) -> None:
        self._write(self.stdout, text + "\n")

    def err(self, text: str) -> None:
        self._write(self.stderr, text + "\n")

    def out_raw(self, text: str) -> None:
        self._write(self.stdout, text)

    def json(self, obj: dict[str, Any]) -> None:
        self.out(json.dumps(obj, ensure_ascii=False))

    def notice_json(self, obj: dict[str, Any]) -> None:
        self.notice(json.dumps(obj, ensure_ascii=False))

    def notice(self, text: str) -> None:
        """Write output that was not asked for by the command being typed."""
        with self._lock:
            prompt = self.prompt
            if prompt is None:
                self.stdout.write(text + "\n")
            else:
                self.stdout.write("\r\x1b[K" + text + "\n" + prompt() + self.typed())
            self.stdout.flush()

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            if stream is self.stderr:
                self.stdout.flush()
            stream.write(text)
            stream.flush()
