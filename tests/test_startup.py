"""What a worker loads at start: a feature's heavy library loads when the feature is first used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Each of these is megabytes in every worker (docs/benchmarks.md, "Memory").
LAZY = ("webauthn", "icu", "cryptography", "redis")
PROBE = """
import json, sys
loaded = lambda: sorted(m for m in {lazy!r} if m in sys.modules)
import quart_app
at_start = loaded()
from quart_app import usernames
usernames.clean("alice")
print(json.dumps({{"at_start": at_start, "after_a_name": loaded()}}))
"""


def test_the_app_starts_without_its_feature_libraries(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUART_")}
    env.update(
        QUART_INSTANCE_PATH=str(tmp_path),
        QUART_DATABASE_URL=f"sqlite://{tmp_path / 'db.sqlite3'}",
        QUART_SECRET_KEY="startup-test-secret-key-0123456789abcdef",
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(lazy=LAZY)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"at_start": [], "after_a_name": ["icu"]}
