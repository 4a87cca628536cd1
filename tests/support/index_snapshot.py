"""The whole index as plain data, the shape the convergence proofs compare with GitLab's truth."""

from __future__ import annotations

from typing import Any

from indexer.store import IndexStore


def index_snapshot(store: IndexStore) -> dict[str, Any]:
    """The whole index as plain data (no timestamps the store sets), for convergence tests."""
    result: dict[str, Any] = {}
    for dataset in store.list_datasets():
        refs = {}
        for ref in store.list_refs(dataset.project_id):
            refs[ref.ref] = {
                "kind": ref.kind,
                "commit_sha": ref.commit_sha,
                "status": ref.status,
                "files": {
                    f.path: (
                        f.md5,
                        f.hash_name,
                        f.size,
                        f.pointer_path,
                        f.in_directory,
                        f.status,
                    )
                    for f in store.iter_ref_files(dataset.project_id, ref.ref)
                },
            }
        result[str(dataset.project_id)] = {
            "name": dataset.name,
            "path_with_namespace": dataset.path_with_namespace,
            "namespace": dataset.namespace,
            "description": dataset.description,
            "visibility": dataset.visibility,
            "topics": sorted(dataset.topics),
            "default_branch": dataset.default_branch,
            "web_url": dataset.web_url,
            "storage_site": dataset.storage_site,
            "refs": refs,
        }
    return result
