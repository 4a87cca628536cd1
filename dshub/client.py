"""A small client for dshub's REST API, used by the `dshub` command line (never imports Flask).

The server is `DSHUB_URL` and the token `DSHUB_TOKEN`, or the `url`/`token` keys of
`~/.config/dshub/config.json` (or `$DSHUB_CONFIG`). The token travels in the
`PRIVATE-TOKEN` header and is never printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from dshub.config import ClientConfig
from indexer.errors import (
    Conflict,
    DshubError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Unavailable,
    Unprocessable,
)


class NoAccess(DshubError):
    """The token is valid but may not do this."""

    status = 403
    code = "forbidden"
    exit_code = 4


class StorageProblem(DshubError):
    """The server reached the storage site, but the object is missing or unreadable."""

    status = 502
    code = "storage_error"
    exit_code = 7


_ERRORS: dict[int, type[DshubError]] = {
    400: InvalidInput,
    401: NotAuthenticated,
    403: NoAccess,
    404: NotFound,
    409: Conflict,
    416: InvalidInput,
    422: Unprocessable,
    502: StorageProblem,
    503: Unavailable,
    504: Unavailable,
}


def error_from_response(response: requests.Response) -> DshubError:
    """Turn an error answer into our exception, keeping the server's own message."""
    message = f"server answered {response.status_code}"
    try:
        body = response.json()
        detail = body.get("error", {})
        if isinstance(detail, dict) and detail.get("message"):
            message = str(detail["message"])
    except (ValueError, AttributeError):
        pass
    kind = _ERRORS.get(response.status_code)
    if kind is None:
        kind = Unavailable if response.status_code >= 500 else InvalidInput
    return kind(message)


class ApiClient:
    """HTTP access to one dshub server with one token."""

    def __init__(self, config: ClientConfig, *, timeout: float = 30.0) -> None:
        self.config = config
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "dshub-cli"
        if config.token:
            self.session.headers["PRIVATE-TOKEN"] = config.token

    def url(self, path: str) -> str:
        """Absolute URL of an API path such as `/api/v1/datasets/1`."""
        return self.config.url + path

    def request(
        self, method: str, path: str, *, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        """Send a request; raise our exceptions for error answers and network failures."""
        try:
            response = self.session.request(
                method, self.url(path), stream=stream, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise Unavailable(
                f"cannot reach {self.config.url} ({type(exc).__name__}); check DSHUB_URL "
                "and the network"
            ) from exc
        if response.status_code >= 400:
            error = error_from_response(response)
            response.close()
            raise error
        return response

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a JSON document."""
        return self.request("GET", path, params=params).json()

    def send_json(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Send a JSON body (POST, PATCH, DELETE) and return the JSON answer."""
        return self.request(method, path, json=dict(body) if body is not None else None).json()


def file_path(project_id: int, dataset_path: str) -> str:
    """The API path of one dataset file; a leading '/' in `dataset_path` means the root."""
    relative = dataset_path.lstrip("/")
    if not relative:
        raise InvalidInput("the dataset path is empty")
    return f"/api/v1/datasets/{project_id}/files/{quote(relative, safe='/')}"
