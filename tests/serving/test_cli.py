"""`segstream webhooks detect|run --metrics-port N` on a port already taken: exit 1 with
the message `segstream stream` gives (the one helper, ``segstream.metric_names.
serve_metrics``), before connecting to anything, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segstream.app.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", [["webhooks", "run"], ["webhooks", "detect"]])
def test_a_taken_metrics_port_is_a_clear_error(command: list[str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, [*command, "--metrics-port", str(port)], env={
            "SEGSTREAM_DATA_DIR": str(tmp_path), "SEGSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "SEGSTREAM_REDIS_URL": "redis://127.0.0.1:1/0", "COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an OSError
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in result.output
    assert "Address already in use" in result.output, result.output
