"""Sandbox control endpoints under `/-/`: health, recorded deliveries and fault knobs."""

from __future__ import annotations

from tests.gitlab_sandbox.http import ApiError, Request, Response, forbidden, router, unauthorized


def _require_admin(req: Request) -> None:
    if req.user is None:
        raise unauthorized()
    if not req.user.admin:
        raise forbidden()


def _faults(req: Request):  # type: ignore[no-untyped-def]
    dispatcher = req.state.webhooks
    if dispatcher is None:
        raise ApiError(503, {"message": "webhook dispatcher not running"})
    return dispatcher


@router.route("GET", "/-/health")
def health(req: Request) -> Response:
    """200 `GitLab OK` (GitLab's own `/-/health` answers plain text)."""
    return Response(200, "GitLab OK", None, "text/plain")


@router.route("GET", "/-/sandbox/deliveries")
def list_deliveries(req: Request) -> Response:
    """Every recorded webhook delivery attempt (admin only)."""
    _require_admin(req)
    return Response(200, [d.as_json() for d in _faults(req).deliveries()])


@router.route("DELETE", "/-/sandbox/deliveries")
def clear_deliveries(req: Request) -> Response:
    """Forget recorded deliveries (admin only)."""
    _require_admin(req)
    _faults(req).clear()
    return Response(204)


@router.route("POST", "/-/sandbox/deliveries/:delivery_id/redeliver")
def redeliver(req: Request) -> Response:
    """Resend a recorded delivery with the same Idempotency-Key (admin only)."""
    _require_admin(req)
    try:
        record = _faults(req).redeliver(int(req.path_params["delivery_id"]))
    except (ValueError, StopIteration, KeyError):
        raise ApiError(404, {"message": "404 Delivery Not Found"}) from None
    return Response(201, record.as_json())


@router.route("GET", "/-/sandbox/faults")
def get_faults(req: Request) -> Response:
    """The current fault knobs (admin only)."""
    _require_admin(req)
    return Response(200, _faults(req).faults.snapshot())


@router.route("POST", "/-/sandbox/faults")
def set_faults(req: Request) -> Response:
    """Set knobs: `{"latency": s, "hang": s, "fail_next": {count, status, retry_after}, "webhooks": {...}}`."""
    _require_admin(req)
    knobs = _faults(req).faults
    try:
        knobs.configure(req.params)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, {"error": str(exc)}) from None
    return Response(201, knobs.snapshot())


@router.route("DELETE", "/-/sandbox/faults")
def reset_faults(req: Request) -> Response:
    """Turn every knob off (admin only)."""
    _require_admin(req)
    _faults(req).faults.reset()
    return Response(204)
