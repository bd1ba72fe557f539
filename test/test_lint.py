"""Lint as a test: flake8 and pep257 docstring checks must report nothing.

Both run over the package, the launch files and the tests: flake8 (pyflakes + pycodestyle,
99-column lines as ament_flake8) and pydocstyle (the pep257 convention as ament_pep257, configured
in setup.cfg's ``[pydocstyle]``; the same as ``pydocstyle bev_mtl_ros launch test``).
"""

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


def test_pep257_docstrings_clean():
    """The pep257 check (pydocstyle, setup.cfg's ``[pydocstyle]``, as ament_pep257) passes."""
    proc = subprocess.run([sys.executable, "-m", "pydocstyle", *LINTED],
                          cwd=REPO, capture_output=True, text=True)
    findings = (proc.stdout + proc.stderr).strip()
    # each finding is a "path:line in ..." line followed by an indented "Dxxx: ..." line
    count = sum(1 for line in findings.splitlines() if line and not line[0].isspace())
    assert proc.returncode == 0, f"pydocstyle reported {count} problem(s):\n{findings}"
