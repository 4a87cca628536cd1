"""The archived flag: written when known, kept when a writer does not know it."""

from __future__ import annotations

from dataclasses import replace

from indexer.store import Dataset, IndexStore


def test_archived_is_kept_unless_a_writer_states_it(store: IndexStore) -> None:
    dataset = Dataset(
        project_id=7,
        name="scans",
        path_with_namespace="lab/scans",
        namespace="lab",
        visibility="public",
    )
    store.upsert_dataset(dataset)
    assert store.get_dataset(7).archived is False  # type: ignore[union-attr]
    store.upsert_dataset(replace(dataset, archived=True))
    store.upsert_dataset(replace(dataset, description="a sync that does not read archived"))
    kept = store.get_dataset(7)
    assert kept is not None and kept.archived is True and kept.description.startswith("a sync")
    store.upsert_dataset(replace(dataset, archived=False))
    assert store.get_dataset(7).archived is False  # type: ignore[union-attr]
    assert [d.archived for d in store.list_datasets()] == [False]
