"""Hostile and malformed API input: a precise 400 or a normal 200, never a 500.

Query text is text: FTS operators, quotes, very long and odd Unicode queries neither fail
nor change what a query means.
"""

from __future__ import annotations

from tests.api.conftest import WORD, World

HOSTILE_QUERIES = [
    '"',
    "'",
    '"unbalanced',
    "alpha OR gamma",
    "NOT alpha",
    "alpha AND",
    "NEAR(alpha beta)",
    "alpha*",
    "*",
    "name:alpha",
    "-alpha",
    "^alpha",
    "(alpha",
    "alpha)",
    "{alpha}",
    "a & b | !c",
    "%_\\",
    "';DROP TABLE datasets;--",
    "x" * 10_000,
    "alpha " * 2_000,
    "\u202ealpha\u202c",  # right-to-left override
    "a\u0301lpha",  # combining accent
    "\U0001f431 cats",
    "\ufeffalpha",
    "\uff21\uff4c\uff50\uff48\uff41",  # full-width letters
    "alpha\x00gamma",
    "\x00",
    "\t\n\r",
]


def _assert_precise(answer: object, what: str) -> None:
    status = answer.status_code  # type: ignore[attr-defined]
    assert status in (200, 400), (what, status, answer.get_data(as_text=True)[:300])  # type: ignore[attr-defined]
    if status == 400:
        error = answer.get_json()["error"]  # type: ignore[attr-defined]
        assert error["code"] == "invalid_input" and error["message"], what


def test_hostile_queries_never_fail_and_stay_text(world: World) -> None:
    for q in HOSTILE_QUERIES:
        for viewer in ("anonymous", "admin"):
            for path in ("/api/v1/datasets", "/api/v1/files"):
                answer = world.get(viewer, path, q=q)
                _assert_precise(answer, f"{path} q={q[:30]!r}")
    # Operators are words: `OR` does not widen, `NOT` does not negate, quotes are ignored.
    assert world.get("admin", "/api/v1/datasets", q="alpha OR gamma").get_json()["total"] == 0
    assert world.get("admin", "/api/v1/datasets", q="NOT alpha").get_json()["total"] == 0
    quoted = world.get("admin", "/api/v1/datasets", q='"alpha"').get_json()
    assert [item["id"] for item in quoted["items"]] == [world.ids["public"]]
    # A long query is cut, and says so; the private dataset stays hidden whatever the query.
    long = world.get("anonymous", "/api/v1/datasets", q=f"{WORD} " * 2_000).get_json()
    assert long["query_truncated"] is True
    assert {item["id"] for item in long["items"]} == {world.ids["public"]}


def test_bad_paging_is_a_precise_400(world: World) -> None:
    cases = {
        "page=abc": ({"page": "abc"}, "page"),
        "per_page=abc": ({"per_page": "abc"}, "per_page"),
        "per_page=1.5": ({"per_page": "1.5"}, "per_page"),
        "per_page=0": ({"per_page": "0"}, "per_page"),
        "per_page=101": ({"per_page": "101"}, "per_page"),
        "per_page=-1": ({"per_page": "-1"}, "per_page"),
        "page=0": ({"page": "0"}, "page"),
        "page=huge": ({"page": "9" * 40}, "page"),
    }
    for path in ("/api/v1/datasets", "/api/v1/files"):
        for what, (params, name) in cases.items():
            answer = world.get("anonymous", path, **params)
            assert answer.status_code == 400, (path, what, answer.get_data(as_text=True))
            error = answer.get_json()["error"]
            assert error["code"] == "invalid_input" and name in error["message"], (what, error)
    for params in ({"sort": "bogus"}, {"visibility": "secret"}):
        answer = world.get("anonymous", "/api/v1/datasets", **params)
        assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_input"
    answer = world.get("anonymous", "/api/v1/files", dataset="1 OR 1=1")
    assert answer.status_code == 400 and "dataset" in answer.get_json()["error"]["message"]
    # Valid edges still work.
    assert world.get("anonymous", "/api/v1/datasets", per_page="100").status_code == 200
    assert world.get("anonymous", "/api/v1/files", per_page="1", page="2").status_code == 200


def test_odd_filters_are_values_not_syntax(world: World) -> None:
    for params in (
        {"namespace": "lab' OR '1'='1"},
        {"topic": "%"},
        {"media_type": "*/*"},
        {"namespace": "\x00"},
        {"topic": "x" * 5000},
    ):
        answer = world.get("admin", "/api/v1/datasets", **params)
        _assert_precise(answer, repr(params)[:60])
        if answer.status_code == 200:
            assert answer.get_json()["total"] == 0, params
    for params in ({"ref": "v1' --"}, {"ref": "\x00"}, {"media_type": "%"}):
        answer = world.get("admin", "/api/v1/files", **params)
        _assert_precise(answer, repr(params))
        if answer.status_code == 200:
            assert answer.get_json()["total"] == 0, params
