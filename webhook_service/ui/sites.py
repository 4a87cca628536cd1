"""Storage-site pages: the list with its search box and each site's details (signed-in users,
as `GET /api/v1/storage-sites`), and "Read more about storage sites". The pages show what
`site_json` shows — never a credential, only whether the site has some."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue

from indexer.errors import InvalidInput, NotAuthenticated, NotFound
from webhook_service.api_sites import _in_use, site_json
from webhook_service.app_settings import services
from webhook_service.auth import current_viewer
from webhook_service.ui import blueprint

MAX_QUERY = 200


def _require_signed_in() -> None:
    if not current_viewer().signed_in:
        raise NotAuthenticated("Sign in with your GitLab token to see the storage sites.")


@blueprint.get("/-/storage-sites")
def sites_page() -> ResponseReturnValue:
    """Registered storage sites matching `q`."""
    _require_signed_in()
    q = request.args.get("q", "")
    if len(q) > MAX_QUERY:
        raise InvalidInput(f"the search may be at most {MAX_QUERY} characters")
    sites = [site_json(record) for record in services().sites.records(q or None)]
    return render_template("ui/sites.html", q=q, sites=sites)


@blueprint.get("/-/storage-sites/<name>")
def site_page(name: str) -> ResponseReturnValue:
    """One storage site and how many datasets use it."""
    _require_signed_in()
    record = services().sites.record(name)
    if record is None:
        raise NotFound(f"No storage site named {name[:100]} is registered.")
    return render_template("ui/site.html", site=site_json(record, _in_use(name)))


@blueprint.get("/-/help/storage-sites")
def about_sites() -> ResponseReturnValue:
    """What a storage site is, proxy and direct access, and why the choice is final."""
    return render_template("ui/about_sites.html")
