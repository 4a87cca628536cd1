"""The GitLab operations and webhook faults the convergence properties draw from.

`World` applies one operation to an example's GitLab (anything with the `Example` attributes
`gl`, `groups`, `sandbox` and `clone`); `STEP` is one hypothesis step: (operation, which
project, which webhook fault, settle afterwards).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import gitlab
import gitlab.exceptions
from hypothesis import strategies as st

from tests.convergence.gitlab_ops import commit, create_dataset, expected_index, write_pointer
from tests.convergence.harness import Example, History, git
from tests.support.index_snapshot import index_snapshot

OPERATIONS = (
    "push",
    "unpoint",
    "tag",
    "untag",
    "retag",
    "visibility",
    "describe",
    "topics",
    "rename",
    "transfer",
    "delete",
    "create",
    "undataset",
    "bulk_push",
)
FAULTS = ("none", "drop", "duplicate", "reorder", "delay")
STEP = st.tuples(
    st.sampled_from(OPERATIONS), st.integers(0, 5), st.sampled_from(FAULTS), st.booleans()
)


class World:
    """The operations, applied to one example's GitLab."""

    def __init__(self, example: Example) -> None:
        self.example = example
        self.gl = example.gl
        self.counter = itertools.count(1)
        self.projects: list[int] = []

    def project(self, n: int) -> Any:
        return self.gl.projects.get(self.projects[n % len(self.projects)])

    def pointers(self, project: Any) -> list[str]:
        tree = project.repository_tree(ref="main", recursive=True, get_all=True)
        return sorted(e["path"] for e in tree if e["type"] == "blob" and e["path"].endswith(".dvc"))

    def apply(self, op: str, n: int) -> None:
        if op == "create" or not self.projects:
            count = next(self.counter)
            files = {f"data/f{count}.csv": (f"seed{count}", count)}
            created = create_dataset(self.gl, self.example.groups[0], f"ds{count}", files=files)
            self.projects.append(int(created.id))
            return
        project = self.project(n)
        count = next(self.counter)
        tags = [t.name for t in project.tags.list(get_all=True)]
        if op == "push":
            path = f"data/f{n % 3}.csv"
            exists = f"{path}.dvc" in self.pointers(project)
            write_pointer(project, path, f"seed{count}", count, exists)
        elif op == "unpoint":
            pointers = self.pointers(project)
            if pointers:
                victim = pointers[n % len(pointers)]
                commit(project, "drop", [{"action": "delete", "file_path": victim}])
        elif op == "tag" and f"v{n % 3}" not in tags:
            project.tags.create({"tag_name": f"v{n % 3}", "ref": "main"})
        elif op == "untag" and tags:
            project.tags.delete(tags[n % len(tags)])
        elif op == "retag" and tags:
            name = tags[n % len(tags)]
            write_pointer(
                project,
                "data/moved.csv",
                f"m{count}",
                count,
                "data/moved.csv.dvc" in self.pointers(project),
            )
            project.tags.delete(name)
            project.tags.create({"tag_name": name, "ref": "main"})
        elif op == "visibility":
            order = ["private", "internal", "public"]
            project.visibility = order[(order.index(project.visibility) + 1) % 3]
            project.save()
        elif op == "describe":
            project.description = f"described {count}"
            project.save()
        elif op == "topics":
            project.topics = [f"t{n}", "common"]
            project.save()
        elif op == "rename":
            project.name = project.path = f"renamed{count}"
            project.save()
        elif op == "transfer":
            groups = self.example.groups
            target = groups[1] if project.namespace["id"] == groups[0] else groups[0]
            project.transfer(target)
        elif op == "delete":
            self.gl.projects.delete(project.id)
            self.projects.remove(project.id)
        elif op == "undataset":
            # A second removal fails: the project is already not a dataset.
            with contextlib.suppress(gitlab.exceptions.GitlabCreateError):
                commit(project, "no more dvc", [{"action": "delete", "file_path": ".dvc/config"}])
        elif op == "bulk_push":
            # Four refs in one push: GitLab (and the sandbox) fire no push/tag hook for it.
            clone = self.example.clone(project.path_with_namespace)
            names = [f"bulk{count}-{i}" for i in range(4)]
            for name in names:
                git(["tag", name], clone)
            git(["push", "-q", "origin", *names], clone)

    def fault(self, fault: str) -> None:
        knobs = self.example.sandbox.faults
        if fault == "drop":
            knobs.drop_webhooks(3)
        elif fault == "duplicate":
            knobs.duplicate_webhooks(3)
        elif fault == "reorder":
            knobs.reorder_webhooks(3)
        elif fault == "delay":
            knobs.delay_webhooks(0.02)


def converge(example: Example, steps: list[tuple[str, int, str, bool]]) -> None:
    """Apply `steps`; after each settle the index holds only states GitLab passed through,
    and after a reconcile it equals GitLab's truth."""
    world = World(example)
    history = History()
    history.record(expected_index(example.gl))
    for op, n, fault, settle in steps:
        world.fault(fault)
        world.apply(op, n)
        history.record(expected_index(example.gl))
        if settle:
            example.settle()
            problems = history.never_seen(index_snapshot(example.store))
            assert not problems, problems
    example.settle()
    problems = history.never_seen(index_snapshot(example.store))
    assert not problems, problems
    example.reconcile()
    assert index_snapshot(example.store) == expected_index(example.gl)
