"""What the Python test scripts share: counted checks, one summary line,
and a way to reach the mock directly (never through a proxy)."""

import json
import sys
import urllib.request

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_counts = {"passed": 0, "failed": 0}


def check(ok, what):
    """Counts and prints one check."""
    if ok:
        _counts["passed"] += 1
        print(f"ok   {what}")
    else:
        _counts["failed"] += 1
        print(f"FAIL {what}")


def finish(name):
    """Prints `NAME: N passed, M failed` and exits 1 on a failure."""
    print(f"{name}: {_counts['passed']} passed, {_counts['failed']} failed")
    sys.exit(1 if _counts["failed"] else 0)


def get_json(url, timeout=10):
    """GET `url` directly and parse its JSON answer."""
    with DIRECT.open(url, timeout=timeout) as r:
        text = r.read().decode()
        return json.loads(text) if text else None
