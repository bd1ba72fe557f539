"""Lint as a test: flake8 (pyflakes + pycodestyle, 99-column lines as ament_flake8) over the
package, the launch files and the tests must report nothing."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINTED = ("bev_mtl_ros", "launch", "test")


def test_flake8_clean():
    proc = subprocess.run([sys.executable, "-m", "flake8", "--max-line-length", "99", *LINTED],
                          cwd=REPO, capture_output=True, text=True)
    findings = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, (f"flake8 reported {len(findings.splitlines())} problem(s):\n"
                                  f"{findings}")
