"""JSON log lines for a service's log collector: one object per record, a fixed set of fields.

python-json-logger does the formatting. Only the fields below are written: a third-party logger's
``extra`` attributes never reach the line (the redacting filter scrubs the message, the traceback and the
stack, not arbitrary attributes), so nothing it did not scrub can leak through this format.
"""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("timestamp", "level", "logger", "message", "process", "thread", "exc_info", "stack_info")


class ServiceJsonFormatter(JsonFormatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s %(process)d %(threadName)s",
                         rename_fields={"levelname": "level", "name": "logger", "threadName": "thread"},
                         timestamp=True)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in [k for k in log_data if k not in FIELDS]:
            del log_data[key]
