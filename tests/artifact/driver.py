"""Runs in a fresh ``python3.12 -I -S``: imports a built function's ``app`` the way Lambda does and feeds it events.

Standard library only, because ``-S`` leaves out every site-packages: whatever ``app`` needs must come from
the two directories on the command line, the function's build directory and the built layer, exactly as
``/var/task`` and ``/opt/python`` are all a deployed function has.

    python3.12 -I -S driver.py <function-dir> <layer-python-dir | -> <request.json> <results.json>

The request file holds ``{"events": [...], "context": {...}}``; the results file gets one handler return
value per event, in order. Any exception (an ImportError above all) ends the process with its traceback.
"""

import json
import sys
import time
from pathlib import Path
from typing import Any


class LambdaContext:
    """What the Lambda runtime passes as ``context``; the remaining time counts down for real."""

    def __init__(self, fields: dict[str, Any], started: float) -> None:
        self.function_name = fields["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = fields["invoked_function_arn"]
        self.memory_limit_in_mb = fields["memory_limit_in_mb"]
        self.aws_request_id = fields["aws_request_id"]
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = fields["log_stream_name"]
        self._deadline = started + fields["remaining_ms"] / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main(function_dir: str, layer_dir: str, request_path: str, results_path: str) -> None:
    sys.path[:0] = [function_dir] + ([layer_dir] if layer_dir != "-" else [])
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    import app  # only now: the paths above are all it may be found on

    results = []
    for event in request["events"]:
        results.append(app.handler(event, LambdaContext(request["context"], time.monotonic())))
    Path(results_path).write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:5])
