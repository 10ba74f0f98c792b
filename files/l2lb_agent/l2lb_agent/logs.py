"""Structured logs to stderr (the journal under systemd): ``key=value`` text or one JSON object per line.

Every line has ``level``, ``logger`` and ``msg`` plus the fields passed as ``extra={"fields": {...}}``
(see :func:`fields`). Secrets never reach a log line: nothing here formats kubeconfigs, tokens or
request headers, and :func:`redact` scrubs bearer tokens from text that might echo them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_TOKEN_RE = re.compile(r'(?i)("?(?:token|password|client-key-data|client_key)"?\s*[:=]\s*"?)[^",\s}]+')
_BARE_RE = re.compile(r"^[A-Za-z0-9_./:@+-]+$")
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


def fields(**values: Any) -> dict[str, Any]:
    """``log.info("renewed", extra=fields(lease=name))`` attaches structured fields to a line."""
    return {"fields": values}


def redact(text: str) -> str:
    """Remove anything that looks like a bearer token or a credential value."""
    return _TOKEN_RE.sub(r"\1<redacted>", _BEARER_RE.sub(r"\1<redacted>", text))


def _value(value: Any) -> str:
    """A field value for key=value output: bare when safe, else JSON-quoted; credentials redacted."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    text = redact(text)
    if text and _BARE_RE.match(text):
        return text
    return json.dumps(text)


def _record_fields(record: logging.LogRecord) -> Mapping[str, Any]:
    extra = getattr(record, "fields", None)
    out: dict[str, Any] = dict(extra) if isinstance(extra, Mapping) else {}
    for key, value in vars(record).items():
        if key not in _STANDARD and key != "fields" and not key.startswith("_"):
            out.setdefault(key, value)
    return out


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=l2lb.heartbeat msg="renewed" node=a lease=l2lb-node-a``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [
            f"ts={stamp}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_value(record.getMessage())}",
        ]
        parts += [f"{key}={_value(value)}" for key, value in _record_fields(record).items()]
        if record.exc_info:
            parts.append(f"exc={_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in _record_fields(record).items():
            body[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            body["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(body, default=str)


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Configure the root logger once for the process: one handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The kubernetes client and urllib3 are chatty (a retry warning per refused connection during an API
    # outage, request details at debug); our own lines say what matters.
    for noisy in ("urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


class NodeLogger(logging.LoggerAdapter):
    """A logger that adds ``node=<name>`` to every line (several in-process agents stay apart in tests)."""

    def __init__(self, logger: logging.Logger, node: str) -> None:
        super().__init__(logger, {"node": node})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        given = extra.get("fields")
        merged = {"node": self.extra["node"] if self.extra else ""}
        if isinstance(given, Mapping):
            merged.update(given)
        extra["fields"] = merged
        kwargs["extra"] = extra
        return msg, kwargs


def node_logger(name: str, node: str) -> NodeLogger:
    return NodeLogger(logging.getLogger(name), node)
