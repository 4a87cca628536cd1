"""Search on both backends: the permission matrix (no leak anywhere), query text as text, paging."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.errors import InvalidInput
from indexer.read.search import (
    Viewer,
    get_dataset,
    highlight_segments,
    list_versions,
    search_datasets,
    search_files,
)
from indexer.store import Dataset, IndexedFile, IndexStore, RefInfo

# id → (visibility, unique word)
DATASETS = {
    1: ("public", "alpha"),
    2: ("internal", "bravo"),
    3: ("private", "charlie"),
    4: ("mystery", "delta"),  # unknown visibility counts as private
}
VIEWERS = {
    "anonymous": (Viewer.anonymous(), {1}),
    "non-member": (Viewer(user_id=10), {1, 2}),
    "guest (no readable id)": (Viewer(user_id=11, readable_private_ids=frozenset()), {1, 2}),
    "reporter of 3": (Viewer(user_id=12, readable_private_ids=frozenset({3})), {1, 2, 3}),
    "reporter of 4": (Viewer(user_id=13, readable_private_ids=frozenset({4})), {1, 2, 4}),
    "admin": (Viewer(user_id=1, is_admin=True), {1, 2, 3, 4}),
    "anonymous with ids": (Viewer(readable_private_ids=frozenset({3, 4})), {1}),
}
MEDIA = {1: "image/png", 2: "image/tiff", 3: "application/x-npy", 4: "image/webp"}


def _file(path: str, media_type: str, md5: str = "0" * 32) -> IndexedFile:
    return IndexedFile(path, md5, "md5", 10, media_type, "data.dvc", True)


@pytest.fixture
def catalog(store: IndexStore) -> IndexStore:
    for project_id, (visibility, word) in DATASETS.items():
        store.upsert_dataset(
            Dataset(
                project_id=project_id,
                name=f"{word.title()} scans",
                path_with_namespace=f"ns-{word}/{word}-set",
                namespace=f"ns-{word}",
                visibility=visibility,
                description=f"shared corpus of {word} retina images",
                topics=("shared-topic", f"topic-{word}"),
                default_branch="main",
                last_activity_at=datetime(2026, 1, project_id, tzinfo=UTC),
            )
        )
        files = [
            _file(f"data/shared/{word}_{i}.{MEDIA[project_id].split('/')[1]}", MEDIA[project_id])
            for i in range(3)
        ]
        store.replace_ref_files(project_id, RefInfo("main", "branch", "a" * 40), files)
        store.replace_ref_files(
            project_id,
            RefInfo("v1", "tag", "b" * 40, ref_date=datetime(2026, 2, 1, tzinfo=UTC)),
            files[:2],
        )
    return store


@pytest.mark.parametrize("who", sorted(VIEWERS))
@pytest.mark.parametrize("q", [None, "shared"])
def test_dataset_search_items_totals_and_facets_never_leak(
    catalog: IndexStore, who: str, q: str | None
) -> None:
    viewer, visible = VIEWERS[who]
    result = search_datasets(catalog, viewer, q)
    words = {DATASETS[i][1] for i in visible}
    assert {item.dataset.project_id for item in result.items} == visible
    assert result.total == len(visible)
    assert result.facets["namespace"] == {f"ns-{w}": 1 for w in words}
    assert result.facets["topic"] == {"shared-topic": len(visible)} | {
        f"topic-{w}": 1 for w in words
    }
    assert result.facets["media_type"] == {MEDIA[i]: 1 for i in visible}
    assert sum(result.facets["visibility"].values()) == len(visible)


@pytest.mark.parametrize("who", sorted(VIEWERS))
def test_filters_on_invisible_values_answer_like_nonexistent_ones(
    catalog: IndexStore, who: str
) -> None:
    viewer, visible = VIEWERS[who]
    for project_id, (_, word) in DATASETS.items():
        expected = 1 if project_id in visible else 0
        for kwargs in (
            {"namespace": f"ns-{word}"},
            {"topic": f"topic-{word}"},
            {"media_type": MEDIA[project_id]},
        ):
            result = search_datasets(catalog, viewer, None, **kwargs)  # type: ignore[arg-type]
            assert result.total == expected, kwargs
            assert sum(result.facets["namespace"].values()) == expected
        by_word = search_datasets(catalog, viewer, word)
        assert by_word.total == expected
    private_total = search_datasets(catalog, viewer, None, visibility="private").total
    assert private_total == len(visible & {3, 4})


@pytest.mark.parametrize("who", sorted(VIEWERS))
def test_get_dataset_and_versions_treat_invisible_as_nonexistent(
    catalog: IndexStore, who: str
) -> None:
    viewer, visible = VIEWERS[who]
    for project_id in [*DATASETS, 999]:
        got = get_dataset(catalog, viewer, project_id)
        versions = list_versions(catalog, viewer, project_id)
        if project_id in visible:
            assert got is not None and got.project_id == project_id
            assert versions is not None and [v.name for v in versions] == ["v1"]
        else:
            assert got is None and versions is None


@pytest.mark.parametrize("who", sorted(VIEWERS))
def test_file_search_never_returns_or_counts_unreadable_files(
    catalog: IndexStore, who: str
) -> None:
    viewer, visible = VIEWERS[who]
    everything = search_files(catalog, viewer, "shared", per_page=100)
    assert {item.row.project_id for item in everything.items} == visible
    assert everything.total == len(visible) * 5 and everything.total_exact
    for project_id, (_, word) in DATASETS.items():
        expected = 5 if project_id in visible else 0
        assert search_files(catalog, viewer, None, dataset=project_id).total == expected
        assert search_files(catalog, viewer, f"{word}_").total == expected
        assert search_files(catalog, viewer, None, media_type=MEDIA[project_id]).total == expected
        assert (
            search_files(catalog, viewer, word, dataset=project_id, ref="v1").total
            == expected * 2 // 5
        )


def test_versions_report_totals_and_diff_against_previous(catalog: IndexStore) -> None:
    admin = Viewer(user_id=1, is_admin=True)
    catalog.replace_ref_files(
        1,
        RefInfo("v2", "tag", "c" * 40, message="more", ref_date=datetime(2026, 3, 1, tzinfo=UTC)),
        [
            _file("data/shared/alpha_0.png", "image/png", md5="1" * 32),
            _file("new.png", "image/png"),
        ],
    )
    versions = list_versions(catalog, admin, 1)
    assert versions is not None
    assert [(v.name, v.file_count, v.total_size) for v in versions] == [
        ("v2", 2, 20),
        ("v1", 2, 20),
    ]
    newest = versions[0]
    assert (newest.added, newest.removed, newest.changed, newest.previous) == (1, 1, 1, "v1")
    assert (versions[1].added, versions[1].previous) == (2, None)


@pytest.mark.parametrize(
    "variant",
    [
        '"retina"',
        "retina*",
        "-retina",
        "retina:",
        "(retina)",
        "NOT retina",
        "retina^",
        "'retina'",
        "RETINA",
    ],
)
def test_operator_characters_do_not_change_a_query(catalog: IndexStore, variant: str) -> None:
    admin = Viewer(user_id=1, is_admin=True)
    plain = search_datasets(catalog, admin, "retina")
    words = variant.replace("NOT ", "not ")
    expected = search_datasets(catalog, admin, words.strip("\"'*-:()^"))
    result = search_datasets(catalog, admin, variant)
    if "not" in words:
        assert result.total == 0  # `not` is a word no dataset contains, not an operator
    else:
        assert result.total == plain.total == expected.total == 4


def test_fts_syntax_words_are_searched_as_words(catalog: IndexStore) -> None:
    admin = Viewer(user_id=1, is_admin=True)
    assert search_datasets(catalog, admin, "alpha OR bravo").total == 0
    assert search_datasets(catalog, admin, "NEAR(alpha bravo)").total == 0
    assert search_datasets(catalog, admin, "alpha AND").total == 0
    assert search_datasets(catalog, admin, "name:alpha").total == 0
    assert search_datasets(catalog, admin, "alpha retina").total == 1


def test_prefix_terms_match_and_name_matches_rank_first(catalog: IndexStore) -> None:
    admin = Viewer(user_id=1, is_admin=True)
    catalog.upsert_dataset(
        Dataset(9, "Retina atlas", "ns-x/atlas", "ns-x", "public", "images", ("eye",), "main")
    )
    result = search_datasets(catalog, admin, "retin")
    assert result.total == 5
    assert result.items[0].dataset.project_id == 9
    assert result.items[0].highlights["name"] == [(0, 6)]


def test_sorts(catalog: IndexStore) -> None:
    admin = Viewer(user_id=1, is_admin=True)
    by_name = [i.dataset.project_id for i in search_datasets(catalog, admin, sort="name").items]
    assert by_name == [1, 2, 3, 4]
    assert [i.dataset.project_id for i in search_datasets(catalog, admin, sort="-name").items] == [
        4,
        3,
        2,
        1,
    ]
    assert [
        i.dataset.project_id for i in search_datasets(catalog, admin, sort="updated").items
    ] == [4, 3, 2, 1]


def test_pages_cover_the_results_once(catalog: IndexStore) -> None:
    admin = Viewer(user_id=1, is_admin=True)
    pages = [
        search_datasets(catalog, admin, "shared", sort="name", page=p, per_page=3)
        for p in (1, 2, 3)
    ]
    ids = [i.dataset.project_id for page in pages for i in page.items]
    assert ids == [1, 2, 3, 4] and all(page.total == 4 for page in pages)
    files = [search_files(catalog, admin, "shared", page=p, per_page=7) for p in (1, 2, 3)]
    assert sum(len(page.items) for page in files) == 20
    assert len({i.row.id for page in files for i in page.items}) == 20


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"per_page": 0}, "per_page"),
        ({"per_page": 101}, "per_page"),
        ({"page": 0}, "page"),
        ({"page": "2"}, "page"),
        ({"page": 1000, "per_page": 100}, "10000"),
        ({"sort": "random"}, "sort"),
        ({"visibility": "secret"}, "visibility"),
        ({"namespace": "x" * 300}, "namespace"),
    ],
)
def test_bad_paging_and_filters_are_invalid_input(
    catalog: IndexStore, kwargs: dict[str, object], problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem):
        search_datasets(catalog, Viewer(), "x", **kwargs)  # type: ignore[arg-type]


def test_long_query_is_capped_and_says_so(catalog: IndexStore) -> None:
    result = search_datasets(catalog, Viewer(), "retina " * 2000)
    assert result.query_truncated and result.total == 1
    files = search_files(catalog, Viewer(), "alpha " * 2000)
    assert files.query_truncated and files.terms == ("alpha",) and files.total == 5


def test_file_search_matches_substrings_case_insensitively_with_offsets(
    catalog: IndexStore,
) -> None:
    admin = Viewer(user_id=1, is_admin=True)
    result = search_files(catalog, admin, "LPHA_1", ref="main")
    assert [i.row.file.path for i in result.items] == ["data/shared/alpha_1.png"]
    assert result.items[0].highlights == [(13, 19)]
    assert search_files(catalog, admin, "a_1 png").total == 2  # main and v1
    assert search_files(catalog, admin, "%").total == 0
    assert search_files(catalog, admin, "_").total == 20


def test_highlight_segments_leave_markup_to_the_template() -> None:
    assert highlight_segments("<b>Retina</b>", [(3, 9)]) == [
        ("<b>", False),
        ("Retina", True),
        ("</b>", False),
    ]


fuzz_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80
) | st.sampled_from(
    [
        '"',
        '""',
        "*",
        "NEAR(",
        "a OR",
        "-",
        ":",
        "^",
        "AND NOT",
        "'",
        "\\",
        "%_",
        "\x00",
        "ǅ",
        "ﬁ",
        "İ",
    ]
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80)
@given(q=fuzz_text)
def test_any_query_text_never_raises(catalog: IndexStore, q: str) -> None:
    reporter = Viewer(user_id=12, readable_private_ids=frozenset({3}))
    datasets = search_datasets(catalog, reporter, q)
    assert datasets.total <= 3
    files = search_files(catalog, reporter, q)
    assert files.total <= 15


def test_file_search_follows_replacements_incremental_changes_and_removals(
    catalog: IndexStore,
) -> None:
    admin = Viewer(user_id=1, is_admin=True)
    catalog.replace_ref_files(
        1, RefInfo("main", "branch", "c" * 40), [_file("fresh/zulu.png", "image/png")]
    )
    assert search_files(catalog, admin, "alpha_2").total == 0  # only main had alpha_2
    assert search_files(catalog, admin, "zulu").total == 1
    catalog.apply_ref_changes(
        1,
        RefInfo("main", "branch", "d" * 40),
        expected_commit="c" * 40,
        removed_paths=["fresh/zulu.png"],
        upserts=[_file("fresh/yankee.png", "image/png")],
    )
    assert search_files(catalog, admin, "zulu").total == 0
    assert [i.row.file.path for i in search_files(catalog, admin, "yankee").items] == [
        "fresh/yankee.png"
    ]
    catalog.remove_ref(1, "v1")
    assert search_files(catalog, admin, "alpha").total == 0
    catalog.remove_dataset(2)
    assert search_files(catalog, admin, "bravo").total == 0
    assert search_files(catalog, admin, "charlie").total == 5


def test_non_ascii_words_and_paths_are_found_on_both_backends(store: IndexStore) -> None:
    store.upsert_dataset(
        Dataset(
            1, "Imágenes Ñandú", "ns/nandu", "ns", "public", "Fotos de 東京 y Straße", (), "main"
        )
    )
    store.replace_ref_files(
        1, RefInfo("main", "branch", "a" * 40), [_file("fotos/Ñandú_東京.jpg", "image/jpeg")]
    )
    for q in ("imágenes", "IMÁGENES", "ñandú", "東京", "straße"):
        assert search_datasets(store, Viewer(), q).total == 1, q
    assert search_datasets(store, Viewer(), "imagenes").total == 0  # accents are not folded
    for q in ("ñandú", "Ñandú", "東京", "ú_東"):
        assert search_files(store, Viewer(), q).total == 1, q
