"""Hypothesis profiles for the whole suite.

``suite`` (the default) draws the same examples on every run, so a property test cannot turn CI
red by chance; ``explore`` (``make explore``) draws fresh ones each run to look for what the
fixed examples miss. A failure there prints the example and a ``@reproduce_failure`` blob.
"""

import os

from hypothesis import settings

settings.register_profile("suite", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))
