"""Structured (JSON-lines) logging for every service.

Invariant: log lines carry ids (complaint id, event id, tracking id), never a reporter's
name, phone, email or NIK, nor complaint text.
"""

import json
import logging
import sys
from datetime import UTC, datetime

from shared.requestid import current_request_id

_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id()  # set while a request is handled (shared.requestid)
        if request_id is not None:
            line["request_id"] = request_id
        line.update({k: v for k, v in vars(record).items() if k not in _STD_ATTRS})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # aiormq's DEBUG dumps every AMQP frame, message bodies included (a submission's identity).
    logging.getLogger("aiormq").setLevel(max(root.level, logging.INFO))
