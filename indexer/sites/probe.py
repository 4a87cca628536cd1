"""Validating a storage site for real: resolve, reach, write, read back and delete a probe.

Every step is reported in words a person can act on (unknown bucket, access denied, wrong
region, TLS, timeout, unreachable, not writable). Before anything is contacted, the endpoint's
host name is resolved once and every address is checked: link-local and cloud-metadata
addresses are refused unless an operator allows them (`DSHUB_ALLOW_LINK_LOCAL_ENDPOINTS`).
The probe then connects only to the address that was checked (pinned), so a DNS answer that
changes between the check and the connection (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.awsrequest
import botocore.config
import botocore.exceptions

from indexer.data.storage import Credentials, StorageSite
from indexer.errors import DshubError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddressLookup = Callable[..., Sequence[tuple[Any, ...]]]

PROBE_TIMEOUT = 5.0
PROBE_DIR = ".dshub-probe"
# Link-local ranges (AWS/GCP/Azure/OpenStack metadata live at 169.254.169.254) and the
# metadata addresses that are not link-local: Alibaba, AWS's IPv6 IMDS, Azure's wire server.
BLOCKED_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("100.100.100.200/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("168.63.129.16/32"),
)
BLOCKED_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
     "instance-data.ec2.internal", "metadata.azure.internal"}
)  # fmt: skip
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class ProbeStep:
    """One step of a validation: `status` is ok, failed or skipped; `message` says what to do."""

    step: str
    status: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The JSON shape of a step."""
        return {"step": self.step, "status": self.status, "message": self.message}


class SiteValidationFailed(DshubError):
    """The site did not pass validation; `steps` says which step failed and why."""

    status = 422
    code = "site_validation_failed"

    def __init__(self, message: str, steps: Sequence[ProbeStep]) -> None:
        super().__init__(message)
        self.steps = tuple(steps)


class EndpointNotAllowed(SiteValidationFailed):
    """The endpoint resolves to a link-local or cloud-metadata address."""

    code = "endpoint_not_allowed"


@dataclass(frozen=True)
class ResolvedEndpoint:
    """An endpoint's host, port and the checked addresses; connections go to `pinned`."""

    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def pinned(self) -> str:
        """The checked address every probe connection uses."""
        return self.addresses[0]


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse addresses or CIDR networks (e.g. for the link-local allow-list); ValueError if bad."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: str, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why `address` may not be contacted (link-local / metadata), or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates: list[IPAddress] = [ip]
    inner = _embedded_ipv4(ip)
    if inner is not None:
        candidates.append(inner)
    for candidate in candidates:
        if any(candidate in net for net in allowed if net.version == candidate.version):
            continue
        if candidate.is_unspecified:
            return f"{address} is the unspecified address"
        for net in BLOCKED_NETWORKS:
            if net.version == candidate.version and candidate in net:
                return f"{address} is a link-local or cloud-metadata address ({net})"
    return None


def endpoint_of(site: StorageSite) -> str:
    """The URL the site is reached at (AWS's regional endpoint when none is set)."""
    return site.endpoint_url or f"https://s3.{site.region or 'us-east-1'}.amazonaws.com"


def resolve_endpoint(
    url: str, allowed: Sequence[IPNetwork] = (), resolver: AddressLookup = socket.getaddrinfo
) -> ResolvedEndpoint:
    """Resolve `url`'s host once and check every address; raises `SiteValidationFailed`."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        _fail("resolve", f"endpoint_url {url!r} has no host name")
    if host in BLOCKED_NAMES or host.endswith(".metadata.google.internal"):
        _refuse(f"endpoint host {host} is a cloud-metadata service name")
    try:
        answers = resolver(host, port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        _fail("resolve", f"endpoint host {host} does not resolve ({exc}); check endpoint_url")
    addresses = tuple(dict.fromkeys(str(answer[4][0]) for answer in answers))
    if not addresses:
        _fail("resolve", f"endpoint host {host} resolves to no address; check endpoint_url")
    for address in addresses:
        reason = blocked_reason(address, allowed)
        if reason is not None:
            _refuse(f"endpoint host {host} resolves to {reason}")
    return ResolvedEndpoint(host, port, addresses)


def _fail(step: str, message: str) -> Any:
    raise SiteValidationFailed(message, [ProbeStep(step, "failed", message)])


def _refuse(reason: str) -> Any:
    message = f"{reason}; refused. An operator may allow it with DSHUB_ALLOW_LINK_LOCAL_ENDPOINTS"
    raise EndpointNotAllowed(message, [ProbeStep("resolve", "failed", message)])


# ------------------------------------------------------------------------------ pinning


def _pinned_pool(base: type, address: str) -> type:
    connection_cls: type = base.ConnectionCls  # type: ignore[attr-defined]

    class PinnedConnection(connection_cls):  # type: ignore[misc]
        """Connects to the checked address; Host header and TLS still use the host name."""

        _dns_host: str

        def _new_conn(self) -> socket.socket:
            dns_host = self._dns_host
            self._dns_host = address
            try:
                sock: socket.socket = super()._new_conn()
            finally:
                self._dns_host = dns_host
            return sock

    return type(f"Pinned{base.__name__}", (base,), {"ConnectionCls": PinnedConnection})


def pin_client(client: Any, address: str) -> None:
    """Make a boto3 client connect only to `address` (raises RuntimeError if it cannot)."""
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    pools = getattr(session, "_pool_classes_by_scheme", None)
    if not isinstance(pools, dict) or "_dns_host" not in vars(
        botocore.awsrequest.AWSHTTPConnection("pin-check")
    ):
        raise RuntimeError("this botocore cannot pin addresses; refusing to probe unpinned")
    # The dict is shared with the pool manager and any proxy manager: mutate it in place.
    pools["http"] = _pinned_pool(botocore.awsrequest.AWSHTTPConnectionPool, address)
    pools["https"] = _pinned_pool(botocore.awsrequest.AWSHTTPSConnectionPool, address)


def s3_client(
    site: StorageSite, credentials: Credentials | None, endpoint: ResolvedEndpoint, timeout: float
) -> Any:
    """A boto3 S3 client for the probe: short timeouts, no retries, pinned to the address."""
    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint_of(site),
        "region_name": site.region or "us-east-1",
        "config": botocore.config.Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            proxies={},
        ),
    }
    if credentials is not None:
        kwargs.update(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )
    client = boto3.session.Session().client("s3", **kwargs)
    pin_client(client, endpoint.pinned)
    return client


# ------------------------------------------------------------------------------ S3


_TRANSPORT: tuple[tuple[type[Exception], str], ...] = (
    (
        botocore.exceptions.SSLError,
        "TLS with {where} failed (certificate not trusted, wrong host name, or the endpoint "
        "does not speak TLS); fix the certificate or the URL's scheme",
    ),
    (
        botocore.exceptions.ConnectTimeoutError,
        "timed out connecting to {where}; check the endpoint URL, firewall and network",
    ),
    (
        botocore.exceptions.ReadTimeoutError,
        "timed out: {where} accepted the connection but did not answer within the probe's "
        "time limit; is it an S3 endpoint, and is it healthy?",
    ),
    (
        botocore.exceptions.EndpointConnectionError,
        "endpoint unreachable: nothing accepts connections at {where}; check endpoint_url",
    ),
    (
        ConnectionError,
        "endpoint unreachable: nothing accepts connections at {where}; check endpoint_url",
    ),
)
_DENIED = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled")


def _s3_problem(exc: Exception, site: StorageSite, action: str, ref: str | None) -> str:
    where = endpoint_of(site)
    for kind, message in _TRANSPORT:
        if isinstance(exc, kind):
            return message.format(where=where)
    if isinstance(exc, botocore.exceptions.ClientError):
        return _client_problem(exc, site, action, ref)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return f"could not {action} at {where}: {exc}"
    raise exc


def _client_problem(
    exc: botocore.exceptions.ClientError, site: StorageSite, action: str, ref: str | None
) -> str:
    where = endpoint_of(site)
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region")
    keys = f"the keys of credentials entry {ref!r}" if ref else "anonymous access"
    messages = {
        "InvalidAccessKeyId": f"access denied: {where} does not know the access key of entry "
        f"{ref!r}",
        "SignatureDoesNotMatch": f"access denied: the secret key of entry {ref!r} does not match "
        "its access key",
    }
    if code in ("NoSuchBucket", "404", "NotFound"):
        return f"unknown bucket: {site.bucket!r} does not exist at {where}"
    if region and code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed", "400"):
        return _wrong_region(site, region)
    if code in messages:
        return messages[code]
    if code in _DENIED:
        return (
            f"access denied: {keys} may not {action} in bucket {site.bucket!r}; "
            "grant it in the bucket policy or IAM"
        )
    return f"{where} refused to {action}: {code} {error.get('Message', '')}".strip()


def _wrong_region(site: StorageSite, actual: str) -> str:
    return (
        f"wrong region: bucket {site.bucket!r} is in {actual}, the site says "
        f"{site.region or 'us-east-1'}; set region to {actual}"
    )


def _probe_key(site: StorageSite) -> str:
    base = site.prefix.strip("/")
    name = f"{PROBE_DIR}/{secrets.token_hex(12)}"
    return f"{base}/{name}" if base else name


class _Steps:
    """Runs steps in order; after the first failure every remaining step is skipped."""

    def __init__(self) -> None:
        self.steps: list[ProbeStep] = []
        self.failed = False

    def run(self, name: str, ok_message: str, work: Callable[[], str | None]) -> None:
        if self.failed:
            self.steps.append(ProbeStep(name, "skipped", "not tried after an earlier failure"))
            return
        problem = work()
        if problem is None:
            self.steps.append(ProbeStep(name, "ok", ok_message))
        else:
            self.failed = True
            self.steps.append(ProbeStep(name, "failed", problem))

    def outcome(self, site: StorageSite) -> list[ProbeStep]:
        if self.failed:
            failed = next(step for step in self.steps if step.status == "failed")
            raise SiteValidationFailed(
                f"storage site {site.name!r} failed validation at step {failed.step!r}: "
                f"{failed.message}",
                self.steps,
            )
        return self.steps


def probe_s3(
    site: StorageSite,
    credentials: Credentials | None,
    readonly: Credentials | None = None,
    *,
    allowed: Sequence[IPNetwork] = (),
    resolver: AddressLookup = socket.getaddrinfo,
    timeout: float = PROBE_TIMEOUT,
) -> list[ProbeStep]:
    """Validate an S3 site; returns the steps, or raises `SiteValidationFailed` naming them."""
    endpoint = resolve_endpoint(endpoint_of(site), allowed, resolver)
    steps = _Steps()
    steps.steps.append(
        ProbeStep("resolve", "ok", f"{endpoint.host} resolves to {', '.join(endpoint.addresses)}")
    )
    client = s3_client(site, credentials, endpoint, timeout)
    ref = site.credentials_ref
    key = _probe_key(site)
    payload = secrets.token_bytes(64)

    def attempt(action: str, call: Callable[[], Any]) -> str | None:
        try:
            call()
        except Exception as exc:  # every failure becomes a worded step
            return _s3_problem(exc, site, action, ref)
        return None

    def reach() -> str | None:
        answer: dict[str, Any] = {}

        def head() -> None:
            answer.update(client.head_bucket(Bucket=site.bucket))

        problem = attempt("list objects", head)
        if problem is not None:
            return problem
        headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        actual = headers.get("x-amz-bucket-region")
        if actual and actual != (site.region or "us-east-1"):
            return _wrong_region(site, actual)
        return None

    def read_back() -> str | None:
        got: list[bytes] = []
        problem = attempt(
            "read objects",
            lambda: got.append(client.get_object(Bucket=site.bucket, Key=key)["Body"].read()),
        )
        if problem is None and got[0] != payload:
            problem = (
                f"read back different bytes than written at {key}; the store is not consistent"
            )
        return problem

    steps.run("connect", f"bucket {site.bucket!r} answers", reach)
    steps.run(
        "write",
        f"wrote probe object {key}",
        lambda: attempt(
            "write objects", lambda: client.put_object(Bucket=site.bucket, Key=key, Body=payload)
        ),
    )
    wrote = not steps.failed
    steps.run("read", "read the probe object back, bytes identical", read_back)
    if readonly is not None:
        ro_client = s3_client(site, readonly, endpoint, timeout)
        ro_ref = "read-only"
        steps.run(
            "read-only keys",
            "the read-only keys can read the probe object",
            lambda: _ro_check(ro_client, site, key, ro_ref),
        )
    steps.run(
        "delete",
        "deleted the probe object",
        lambda: attempt(
            "delete objects", lambda: client.delete_object(Bucket=site.bucket, Key=key)
        ),
    )
    if steps.failed and wrote:
        # Never leave the probe behind, whichever later step failed.
        attempt("delete objects", lambda: client.delete_object(Bucket=site.bucket, Key=key))
    return steps.outcome(site)


def _ro_check(client: Any, site: StorageSite, key: str, ref: str) -> str | None:
    try:
        client.head_object(Bucket=site.bucket, Key=key)
    except Exception as exc:  # worded for the person registering the site
        return "the read-only keys: " + _s3_problem(exc, site, "read objects", ref)
    return None


# ------------------------------------------------------------------------------ local


def _os_problem(exc: OSError, path: Path, action: str) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"directory not writable: the service cannot {action} in {path} "
            f"({exc.strerror}); give the service's user write access"
        )
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {path}"
    if exc.errno == errno.ENOTDIR:
        return f"{path} is not a directory (a file is in the way)"
    return f"could not {action} in {path}: {exc.strerror or exc}"


def probe_local(site: StorageSite) -> list[ProbeStep]:
    """Validate a local-directory site by writing, reading back and deleting a probe file."""
    root = Path(site.path or "")
    base = root / site.prefix.strip("/") if site.prefix.strip("/") else root
    target = base / PROBE_DIR / secrets.token_hex(12)
    payload = secrets.token_bytes(64)
    steps = _Steps()

    def directory() -> str | None:
        if not root.exists():
            return f"directory {root} does not exist; create it on the service's host"
        if not root.is_dir():
            return f"{root} is not a directory"
        return None

    def write() -> str | None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
        except OSError as exc:
            return _os_problem(exc, target.parent, "create files")
        return None

    def read() -> str | None:
        try:
            same = target.read_bytes() == payload
        except OSError as exc:
            return _os_problem(exc, target, "read files")
        return None if same else f"read back different bytes than written at {target}"

    def delete() -> str | None:
        try:
            target.unlink()
            os.rmdir(target.parent)
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                return None  # another probe is running at the same time
            return _os_problem(exc, target, "delete files")
        return None

    steps.run("directory", f"{root} exists", directory)
    steps.run("write", f"wrote probe file {target}", write)
    wrote = not steps.failed
    steps.run("read", "read the probe file back, bytes identical", read)
    steps.run("delete", "deleted the probe file", delete)
    if steps.failed and wrote:
        target.unlink(missing_ok=True)
    return steps.outcome(site)


def probe_site(
    site: StorageSite,
    credentials: Credentials | None,
    readonly: Credentials | None = None,
    *,
    allowed: Sequence[IPNetwork] = (),
    resolver: AddressLookup = socket.getaddrinfo,
    timeout: float = PROBE_TIMEOUT,
) -> list[ProbeStep]:
    """Validate `site` for real (S3 or local); raises `SiteValidationFailed` with the steps."""
    if site.kind == "local":
        return probe_local(site)
    return probe_s3(
        site, credentials, readonly, allowed=allowed, resolver=resolver, timeout=timeout
    )
