import io
import json
import logging

import pytest

from backend.logs import RUN_ID, configure


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_off_a_terminal_each_naming_its_run():
    out = Pipe()
    configure("info", out)
    log = logging.getLogger("myriad.test")
    log.info("idle")
    named = RUN_ID.set(7)
    log.warning("host lost")
    RUN_ID.reset(named)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert (first["level"], first["message"], first["run_id"]) == ("INFO", "idle", None)
    assert (second["level"], second["logger"], second["run_id"]) == ("WARNING", "myriad.test", 7)
    assert "time" in second


def test_plain_lines_on_a_terminal():
    out = Terminal()
    configure("warning", out)
    named = RUN_ID.set(3)
    logging.getLogger("myriad.test").warning("slow round")
    RUN_ID.reset(named)
    logging.getLogger("myriad.test").info("not shown")
    assert out.getvalue() == "WARNING myriad.test [run 3]: slow round\n"
