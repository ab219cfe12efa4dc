"""cpuformer makes OpenMP threads spin only briefly before sleeping, unless the user chose a policy."""

import os
import subprocess
import sys


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    code = "import os, cpuformer; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()


def test_default_is_a_short_spin():
    assert _run({}) == ["None", "10000"]


def test_user_choice_is_kept():
    assert _run({"OMP_WAIT_POLICY": "active"}) == ["active", "None"]
    assert _run({"GOMP_SPINCOUNT": "1000"}) == ["None", "1000"]
