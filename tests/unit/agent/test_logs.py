"""Structured logs: key=value and JSON lines with fields, and no credentials."""

from __future__ import annotations

import io
import json
import logging

from l2lb_agent.logs import JsonFormatter, KeyValueFormatter, fields, node_logger, redact


def _line(formatter: logging.Formatter, *args: object, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("l2lb.test.logs")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    node_logger("l2lb.test.logs", "node-a").info(*args, **extra)  # type: ignore[arg-type]
    return stream.getvalue().strip()


def test_key_value_line_has_node_and_fields_quoted_when_needed() -> None:
    line = _line(KeyValueFormatter(), "announcing node changes", extra=fields(ip="198.18.10.1", to="node b"))
    assert " level=info logger=l2lb.test.logs " in line
    assert 'msg="announcing node changes"' in line
    assert "node=node-a ip=198.18.10.1" in line and 'to="node b"' in line


def test_json_line_is_one_object() -> None:
    body = json.loads(_line(JsonFormatter(), "renewed", extra=fields(lease="l2lb-node-a", count=3)))
    assert body["msg"] == "renewed" and body["node"] == "node-a" and body["count"] == 3


def test_credentials_are_redacted() -> None:
    assert "s3cr3t" not in redact("Authorization: Bearer s3cr3t.token-value")
    assert "hunter2" not in redact('{"token": "hunter2"}')
    line = _line(KeyValueFormatter(), "failed: Bearer abc.def", extra=fields(error="token=xyz123"))
    assert "abc.def" not in line and "xyz123" not in line
