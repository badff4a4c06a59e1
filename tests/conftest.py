import os
import sys
from pathlib import Path

from hypothesis import settings

# CI explores the same examples on every run (a red CI must mean a real change); local runs explore new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# tests/helpers.py is shared by test files in several folders (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))
