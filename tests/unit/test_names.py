"""One name per concept: a class name means one thing across hacoord's layers.

Two classes may share a name only when they are the same concept seen from two layers (the API's
answer schema and the client's model of it, say); those are listed here with why. Anything else
is a name that means two things (as ``ApiError`` once did in the server and in the client), and
a newcomer reading one layer would take it for the other.
"""

from __future__ import annotations

import ast
from collections import defaultdict

from tests.unit.test_layers import ROOT

#: name -> why the classes of that name are one concept.
SAME_CONCEPT = {
    "AuditEntry": "who made a change: the API's answer schema and the client's model of it",
    "Event": "one change-feed event: core's record of it and the API's answer schema",
    "MemberInfo": "a coordinator member as configured: replication's record, the API's answer "
                  "schema and the client's model of it",
    "PendingMove": "a partition's move in flight: core's record of it and the API's answer schema",
}


def test_no_class_name_means_two_things() -> None:
    homes: dict[str, list[str]] = defaultdict(list)
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                homes[node.name].append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in homes.items() if len(paths) > 1}
    assert set(shared) <= set(SAME_CONCEPT), {n: p for n, p in shared.items()
                                              if n not in SAME_CONCEPT}
    assert len(homes) > 100  # the walk found the package
