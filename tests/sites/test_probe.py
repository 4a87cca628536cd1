"""The probe on its own: address checks (without contacting anything), pinning, timeouts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.data.storage import Credentials, StorageSite
from indexer.sites.probe import (
    EndpointNotAllowed,
    SiteValidationFailed,
    blocked_reason,
    parse_networks,
    probe_site,
    resolve_endpoint,
)
from tests.conftest import S3Bucket


class FixedResolver:
    """A DNS that answers every name with the given addresses and counts the questions."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.calls = 0

    def __call__(self, host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        self.calls += 1
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in self.addresses
        ]


def _site(bucket: S3Bucket, endpoint: str | None = None, **extra: Any) -> StorageSite:
    return StorageSite(
        name="probe",
        kind="s3",
        bucket=bucket.name,
        prefix="p",
        endpoint_url=endpoint or bucket.endpoint_url,
        region=bucket.region,
        credentials_ref="rw",
        **extra,
    )


def _creds(bucket: S3Bucket) -> Credentials:
    return Credentials(bucket.access_key, bucket.secret_key)


@pytest.mark.parametrize(
    "addresses",
    [
        ("169.254.169.254",),
        ("127.0.0.1", "169.254.169.254"),  # one bad address among good ones is enough
        ("fe80::1",),
        ("fe80::1%2",),
        ("::ffff:169.254.169.254",),
        ("64:ff9b::a9fe:a9fe",),
        ("100.100.100.200",),
        ("fd00:ec2::254",),
        ("0.0.0.0",),
    ],
)
def test_every_resolved_address_is_checked(addresses: tuple[str, ...]) -> None:
    resolver = FixedResolver(*addresses)
    with pytest.raises(EndpointNotAllowed) as refused:
        resolve_endpoint("https://storage.example.test:9000", resolver=resolver)
    assert resolver.calls == 1
    assert refused.value.steps[0].step == "resolve"


def test_metadata_host_names_are_refused_without_resolving_them() -> None:
    resolver = FixedResolver("127.0.0.1")
    for url in ("http://metadata.google.internal", "http://METADATA.google.internal."):
        with pytest.raises(EndpointNotAllowed):
            resolve_endpoint(url, resolver=resolver)
    assert resolver.calls == 0


def test_an_operator_allow_list_lets_a_link_local_endpoint_through() -> None:
    allowed = parse_networks(["169.254.10.0/24"])
    resolved = resolve_endpoint(
        "http://minio.lab.test:9000", allowed, FixedResolver("169.254.10.5")
    )
    assert resolved.pinned == "169.254.10.5" and resolved.port == 9000
    with pytest.raises(EndpointNotAllowed):  # the metadata address stays refused
        resolve_endpoint("http://x.test", allowed, FixedResolver("169.254.169.254"))


def test_unresolvable_host_is_a_resolve_step_failure() -> None:
    def no_dns(*args: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(SiteValidationFailed) as failed:
        resolve_endpoint("http://nowhere.test", resolver=no_dns)
    assert "does not resolve" in failed.value.message


@given(st.integers(min_value=0, max_value=2**16 - 1))
def test_all_of_169_254_is_refused_in_every_spelling(low: int) -> None:
    v4 = f"169.254.{low >> 8}.{low & 0xFF}"
    assert blocked_reason(v4) is not None
    assert blocked_reason(f"::ffff:{v4}") is not None
    assert blocked_reason("127.0.0.1") is None and blocked_reason("10.1.2.3") is None


def test_probe_connects_only_to_the_address_it_checked(s3_bucket: S3Bucket) -> None:
    """DNS rebinding: the host in the URL is never resolved again by the S3 client.

    The URL names 127.0.0.3 (nothing listens there); the checked answer is 127.0.0.1, where
    moto listens. The probe succeeds only if the client connects to the checked address.
    """
    port = s3_bucket.endpoint_url.rsplit(":", 1)[1]
    site = _site(s3_bucket, f"http://127.0.0.3:{port}")
    steps = probe_site(site, _creds(s3_bucket), resolver=FixedResolver("127.0.0.1"))
    assert [step.status for step in steps] == ["ok"] * 5
    with pytest.raises(SiteValidationFailed) as failed:  # control: unpinned, nothing there
        probe_site(site, _creds(s3_bucket), resolver=FixedResolver("127.0.0.3"), timeout=2)
    assert "unreachable" in failed.value.message


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback socket that accepts connections (kernel backlog) and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def test_an_endpoint_that_never_answers_is_a_timeout(
    s3_bucket: S3Bucket, silent_server: str
) -> None:
    site = _site(s3_bucket, silent_server)
    with pytest.raises(SiteValidationFailed) as failed:
        probe_site(site, _creds(s3_bucket), timeout=0.5)
    connect = next(step for step in failed.value.steps if step.step == "connect")
    assert connect.status == "failed" and "timed out" in connect.message
    assert [step.status for step in failed.value.steps[2:]] == ["skipped"] * 3


def test_read_only_keys_are_probed_in_direct_mode(s3_bucket: S3Bucket) -> None:
    site = _site(s3_bucket, access_mode="direct")
    steps = probe_site(site, _creds(s3_bucket), Credentials("readonly-key-id", "ro-secret-key"))
    assert [step.step for step in steps] == [
        "resolve",
        "connect",
        "write",
        "read",
        "read-only keys",
        "delete",
    ]
    assert s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name).get("Contents") is None


def test_tls_to_a_plain_http_endpoint_is_reported_as_tls(s3_bucket: S3Bucket) -> None:
    site = _site(s3_bucket, s3_bucket.endpoint_url.replace("http://", "https://"))
    with pytest.raises(SiteValidationFailed) as failed:
        probe_site(site, _creds(s3_bucket), timeout=2)
    assert "TLS" in failed.value.message
