"""One integer rule for every number a client sends: ASCII digits, explicit bounds, a 400
naming the parameter and its range, never a 500 (`str.isdigit()` accepts superscripts that
`int()` refuses; `int()` accepts other scripts' digits, which no URL of ours should carry)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.errors import InvalidInput
from indexer.ingest.events import MAX_ID
from webhook_service import create_app
from webhook_service.params import number_field, parse_int

ROOT = Path(__file__).resolve().parents[2]

# Every integer query parameter of every route: (url, parameter, low, high). Each route parses
# its numbers before it looks anything up, so an app without GitLab answers them all.
INTEGER_PARAMETERS = [
    ("/api/v1/datasets", "page", 1, 10_000),
    ("/api/v1/datasets", "per_page", 1, 100),
    ("/api/v1/files", "page", 1, 10_000),
    ("/api/v1/files", "per_page", 1, 100),
    ("/api/v1/files", "dataset", 1, MAX_ID),
    ("/api/v1/datasets/1/tree", "page", 1, 10**6),
    ("/api/v1/datasets/1/tree", "per_page", 1, 1000),
    ("/api/v1/datasets/1/files/a.png", "preview", 16, 1024),
    ("/api/v1/datasets/1/merge_requests/1/diff", "limit", 1, 1000),
]

# Digits of every script, superscripts, fractions, signs, separators and spaces.
NUMBERISH = st.text(
    alphabet=st.one_of(
        st.characters(categories=["Nd", "No", "Nl"]),
        st.sampled_from("0123456789+-_ .,eE\t\u00a0\u2212"),
    ),
    min_size=1,
    max_size=30,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    data = tmp_path_factory.mktemp("params")
    app = create_app(
        {
            "DSHUB_DATA_DIR": str(data),
            "DSHUB_INDEX_URL": f"sqlite:///{data / 'index.sqlite3'}",
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
        }
    )
    yield app.test_client()


def _is_valid(raw: str, low: int, high: int) -> bool:
    return raw.isascii() and raw.isdigit() and len(raw) <= 20 and low <= int(raw) <= high


def _check(client: FlaskClient, url: str, name: str, low: int, high: int, raw: str) -> None:
    answer = client.get(url, query_string={name: raw})
    assert answer.status_code < 500, (url, name, raw, answer.get_data(as_text=True))
    if _is_valid(raw, low, high):
        if answer.status_code == 400:  # another check may refuse it, never this one
            assert f"{name} must be" not in answer.get_json()["error"]["message"]
        return
    assert answer.status_code == 400, (url, name, raw)
    error = answer.get_json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"].startswith(f"{name} must be a whole number from {low} to {high}")


@pytest.mark.parametrize(("url", "name", "low", "high"), INTEGER_PARAMETERS)
def test_every_integer_parameter_has_one_rule(
    client: FlaskClient, url: str, name: str, low: int, high: int
) -> None:
    for raw in (
        "\u00b2",  # superscript two: isdigit() but not int()
        "\u0661",  # Arabic-Indic one: int() says 1
        "\uff11",  # full-width one
        "1_0",  # int() accepts underscores
        " 1",
        "+1",
        "-1",
        "1.0",
        "1e3",
        "0",
        "9" * 40,
        str(low),
        str(high),
        str(high + 1),
        str(low - 1),
    ):
        _check(client, url, name, low, high, raw)


@pytest.mark.parametrize(("url", "name", "low", "high"), INTEGER_PARAMETERS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=NUMBERISH)
def test_numberish_text_is_a_number_or_a_precise_400(
    client: FlaskClient, url: str, name: str, low: int, high: int, raw: str
) -> None:
    _check(client, url, name, low, high, raw)


@given(raw=st.text(max_size=30), low=st.integers(-5, 5), span=st.integers(0, 10**20))
def test_parse_int_accepts_exactly_ascii_digits_in_range(raw: str, low: int, span: int) -> None:
    high = low + span
    body = raw[1:] if raw.startswith("-") and low < 0 else raw
    expected = body.isascii() and body.isdigit() and len(body) <= 20 and low <= int(raw) <= high
    try:
        value = parse_int(raw, "n", low, high)
    except InvalidInput as exc:
        assert not expected
        assert exc.message.startswith(f"n must be a whole number from {low} to {high}")
    else:
        assert expected and value == int(raw)


@given(
    value=st.one_of(
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=5),
        st.none(),
    )
)
def test_json_numbers_are_bounded_before_conversion(value: object) -> None:
    try:
        hours = number_field({"h": value}, "h", 1.0, 1, 1000)
    except InvalidInput as exc:
        assert exc.message == "h must be a number from 1 to 1000"
    else:
        assert 1 <= hours <= 1000 and not isinstance(value, bool)


def test_path_ids_are_ascii_digits_up_to_the_largest_integer(client: FlaskClient) -> None:
    missing = client.get("/api/v1/datasets/12").get_json()
    assert missing == {"error": {"code": "not_found", "message": "dataset 12 not found"}}
    for path in (
        f"/api/v1/datasets/{MAX_ID + 1}",
        "/api/v1/datasets/" + "9" * 40,
        "/api/v1/datasets/\u0661\u0662",
        "/api/v1/datasets/\uff11\uff12/tree",
        "/dvc/" + "9" * 30 + "/missing",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.get_data(as_text=True))
    assert client.get(f"/api/v1/datasets/{MAX_ID}").status_code == 404


def test_no_route_parses_numbers_by_itself() -> None:
    """The class, not the cases: outside `params.py`, no module of the HTTP edge or the core
    calls `str.isdigit()` or `request.args.get(..., type=...)` on client text."""
    offenders = []
    for folder in ("webhook_service", "indexer"):
        for source in sorted((ROOT / folder).rglob("*.py")):
            if source.name == "params.py":
                continue
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                if node.func.attr in ("isdigit", "isdecimal", "isnumeric"):
                    offenders.append(f"{source.relative_to(ROOT)}:{node.lineno}")
                if node.func.attr == "get" and any(k.arg == "type" for k in node.keywords):
                    offenders.append(f"{source.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
