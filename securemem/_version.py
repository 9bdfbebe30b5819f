"""The version of securemem: the one place it is written.

setuptools reads it from here for the package metadata (``[tool.setuptools.dynamic]`` in
pyproject.toml, parsed without importing the package), and ``securemem.__version__`` and
``securemem --version`` import it, so an editable install, a wheel and an sdist all report
the same number without asking ``importlib.metadata`` at import time.
"""

__version__ = "0.1.0"
