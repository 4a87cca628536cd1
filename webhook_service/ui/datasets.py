"""The datasets page `/`: search, facets with counts, results and pages — `GET /api/v1/datasets`
in HTML, through the same `indexer.read.search.search_datasets` call (same filters, same limits,
same permission rule: what the caller may not read is in no item, total or count)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import render_template, request
from flask.typing import ResponseReturnValue

from indexer.read import search
from indexer.store import Dataset, IndexStore
from webhook_service.app_settings import services
from webhook_service.auth import current_viewer
from webhook_service.params import int_arg
from webhook_service.ui import blueprint

PER_PAGE = 20
FILTERS = ("namespace", "topic", "visibility", "media_type")
FACET_LABELS = {
    "namespace": "Namespace",
    "topic": "Tags",
    "visibility": "Visibility",
    "media_type": "File types",
}


@dataclass(frozen=True)
class Summary:
    """What a result shows beside the dataset itself: its default branch's totals and newest
    version, from the index (the refs `GET /api/v1/datasets/<id>/versions` lists)."""

    file_count: int | None
    total_size: int | None
    latest_version: str | None


def summary(store: IndexStore, dataset: Dataset) -> Summary:
    """The indexed totals of the default branch and the newest version's name."""
    refs = store.list_refs(dataset.project_id)
    branch = next((r for r in refs if r.ref == dataset.default_branch), None)
    tags = [r for r in refs if r.kind == "tag"]
    tags.sort(key=lambda r: (r.ref_date.timestamp() if r.ref_date else float("-inf"), r.ref))
    return Summary(
        file_count=branch.file_count if branch else None,
        total_size=branch.total_size if branch else None,
        latest_version=tags[-1].ref if tags else None,
    )


def page_number() -> int:
    """`?page=` as a number from 1 (the API's rule; bad input is a 400 page)."""
    return int_arg("page", 1, 1, search.MAX_OFFSET)


@blueprint.get("/")
def datasets_page() -> ResponseReturnValue:
    """Search the datasets the caller may read."""
    store = services().index
    viewer = current_viewer()
    q = request.args.get("q", "")
    chosen = {name: request.args.get(name) or None for name in FILTERS}
    result = search.search_datasets(
        store,
        viewer,
        q,
        sort=request.args.get("sort") or None,
        page=page_number(),
        per_page=PER_PAGE,
        **chosen,
    )
    last_page = max(1, -(-result.total // PER_PAGE))
    return render_template(
        "ui/datasets.html",
        q=q,
        chosen=chosen,
        sort=request.args.get("sort") or "",
        result=result,
        summaries={item.dataset.project_id: summary(store, item.dataset) for item in result.items},
        facet_labels=FACET_LABELS,
        last_page=min(last_page, search.MAX_OFFSET // PER_PAGE),
        signed_in=viewer.signed_in,
        filtered=bool(q or any(chosen.values())),
    )
