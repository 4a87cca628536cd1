"""A JUnit XML report (what GitLab's `artifacts:reports:junit` shows in the merge request)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TestCase:
    """One check: passed when `failure` and `skipped` are both None."""

    classname: str
    name: str
    failure: str | None = None
    skipped: str | None = None


def write_junit(path: Path, suite: str, cases: list[TestCase]) -> None:
    """Write `cases` as one JUnit test suite named `suite` to `path`."""
    failures = sum(1 for case in cases if case.failure is not None)
    skipped = sum(1 for case in cases if case.skipped is not None)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures))
    node = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
    )
    for case in cases:
        element = ET.SubElement(node, "testcase", classname=case.classname, name=case.name)
        if case.failure is not None:
            first = case.failure.splitlines()[0] if case.failure else "failed"
            failure = ET.SubElement(element, "failure", message=first)
            failure.text = case.failure
        elif case.skipped is not None:
            ET.SubElement(element, "skipped", message=case.skipped)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
