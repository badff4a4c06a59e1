import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from hypothesis import settings

# CI explores the same examples on every run (a red CI must mean a real change); local runs explore new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# The decoded-folder cache (convscope.data.cache) of this test session lives in a folder of its own, never in the
# user's ~/.cache; subprocesses inherit it. Set before any test imports convscope.
os.environ["CONVSCOPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="convscope-test-cache-")
atexit.register(shutil.rmtree, os.environ["CONVSCOPE_CACHE_DIR"], ignore_errors=True)  # nothing left behind in /tmp
# Likewise the default folder of downloaded datasets and of arrays given to convscope.train (convscope.data.home):
# empty, never the user's own.
os.environ["CONVSCOPE_DATA_HOME"] = tempfile.mkdtemp(prefix="convscope-test-data-")
atexit.register(shutil.rmtree, os.environ["CONVSCOPE_DATA_HOME"], ignore_errors=True)

# tests/helpers.py is shared by test files in several folders (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))
