"""The composition root: every resource a dshub process shares, built once from `Settings`.

Modelled on flaskr's `db.py`: the web application (`webhook_service.create_app`), `dshub
worker` and `dshub reconcile` each build one `Services` and reach the index store, the site
registry, storage credentials, GitLab readers, the sync context, the resolver, the
permission resolver and the webhook receiver through it; `close()` releases them (gunicorn
runs it at worker exit). Resources are built on first use, once, so a process whose index
is unreachable still starts and `/readyz` can say so. `indexer/` receives what it needs
from here and never reads settings itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dshub.config import Settings
from indexer.data.listing_cache import ListingCache, ObjectLog, object_log
from indexer.data.storage import (
    Credentials,
    LocalObjectStore,
    S3ObjectStore,
    StorageSite,
    load_credentials,
    open_objects,
)
from indexer.errors import Unavailable
from indexer.gitlab.permissions import Generation, PermissionResolver, generation_for
from indexer.gitlab.reader import GitLabReader
from indexer.ingest.queue import HandOver
from indexer.ingest.receiver import Receiver
from indexer.ingest.scheduler import ReconcileScheduler, journal_scheduler
from indexer.read.lru import LruCache
from indexer.read.resolve import Resolver
from indexer.sites.registry import SiteRegistry
from indexer.store import IndexStore, open_index
from indexer.sync import jobs
from indexer.sync.refs import SyncContext

log = logging.getLogger("dshub.services")
OPENED_STORES = 256  # datasets whose opened site stores a process keeps
T = TypeVar("T")

REQUEST_TIMEOUT = 10.0  # a request must not hang on GitLab: one retry, no sleeping on 429
COMMIT_FACTS_ENTRIES = 1024  # README cards and last commits, each fixed by a commit sha


def request_reader(settings: Settings, token: str | None) -> GitLabReader:
    """A reader of the configured GitLab for use inside a request: short timeout, one retry.

    A request must not hang on GitLab: a 429 answers 503 at once instead of sleeping
    through `Retry-After` while the caller waits.
    """
    if settings.gitlab_url is None:
        raise Unavailable("no GitLab is configured (DSHUB_GITLAB_URL)")
    return GitLabReader(
        settings.gitlab_url, token, timeout=REQUEST_TIMEOUT, max_retries=1, obey_rate_limit=False
    )


class Services:
    """One process's shared resources; thread-safe, each built once on first use."""

    def __init__(
        self, settings: Settings, on_hand_over: Callable[[list[HandOver]], None] | None = None
    ) -> None:
        self.settings = settings
        self._on_hand_over = on_hand_over
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._opening = threading.Lock()  # opening a dataset's site store (open_objects)
        self._scheduler: ReconcileScheduler | None = None
        self._closed = False

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            found: T = self._built[name]
            return found

    # ------------------------------------------------------------------ resources

    @property
    def index(self) -> IndexStore:
        """The search index (opened and migrated on first use)."""
        return self._once("index", lambda: open_index(self.settings.index_url))

    @property
    def sites(self) -> SiteRegistry:
        """The storage-site registry in the service database."""
        return self._once("sites", lambda: SiteRegistry(self.settings.index_url))

    @property
    def credentials(self) -> dict[str, Credentials]:
        """Storage-site credentials from `DSHUB_STORAGE_CREDENTIALS_FILE` (never logged)."""
        return self._once(
            "credentials", lambda: load_credentials(self.settings.storage_credentials_file)
        )

    @property
    def generation(self) -> Generation:
        """The permission-cache invalidation counter every process of a deployment shares."""
        return self._once(
            "generation", lambda: generation_for(self.settings.redis_url, self.settings.data_dir)
        )

    @property
    def objects_log(self) -> ObjectLog:
        """The log of objects stored and deleted per dataset, shared by every process
        (Redis, or a file in the data directory), which keeps cached listings true."""
        return self._once(
            "objects_log", lambda: object_log(self.settings.redis_url, self.settings.data_dir)
        )

    @property
    def listings(self) -> ListingCache:
        """This process's cached listings of datasets' objects (the DVC remote's presence
        answers, and whether an upload's object is stored already)."""
        return self._once("listings", lambda: ListingCache(self.objects_log))

    def open_objects(self, site: StorageSite, project_id: int) -> LocalObjectStore | S3ObjectStore:
        """Byte access to one dataset's objects on `site`, opened once per site record and
        dataset (an S3 store holds a boto3 client: ~0.1 s of CPU to make, thread-safe to
        share); concurrent first uses wait for one opening instead of each making a client."""
        opened: LruCache[tuple[StorageSite, int], LocalObjectStore | S3ObjectStore] = self._once(
            "opened_objects", lambda: LruCache(OPENED_STORES)
        )
        key = (site, project_id)
        held = opened.lookup(key)
        if held is not None:
            return held[0]
        with self._opening:
            return opened.get_or_make(
                key, lambda: (open_objects(site, project_id, self.credentials), True)
            )

    def request_reader(self, token: str | None) -> GitLabReader:
        """A GitLab reader for use inside a request with `token` (see `request_reader`)."""
        return request_reader(self.settings, token)

    @property
    def service_reader(self) -> GitLabReader:
        """`request_reader` with dshub's own service token."""
        return self._once("service_reader", lambda: self.request_reader(self.settings.gitlab_token))

    @property
    def permissions(self) -> PermissionResolver:
        """Token → viewer, asked of the configured GitLab (never another host), cached."""
        return self._once(
            "permissions", lambda: PermissionResolver(self.request_reader, self.generation)
        )

    @property
    def job_context(self) -> SyncContext:
        """The context jobs run with: the service token with the jobs' patient retries."""
        return self._once("job_context", self._build_job_context)

    def _build_job_context(self) -> SyncContext:
        if self.settings.gitlab_url is None:
            raise Unavailable("DSHUB_GITLAB_URL is not set: jobs cannot read GitLab")
        return SyncContext(
            reader=GitLabReader(self.settings.gitlab_url, self.settings.gitlab_token),
            store=self.index,
            sites=self.sites.get,
            credentials=self.credentials,
            generation=self.generation,
            namespaces=self.settings.namespaces,
            mr_notes=self.settings.mr_notes,
            opener=self.open_objects,
            held=self.listings.held,
        )

    @property
    def request_context(self) -> SyncContext:
        """A sync context for reads inside a request (the MR data diff): request timeouts."""
        return self._once(
            "request_context",
            lambda: SyncContext(
                reader=self.service_reader,
                store=self.index,
                sites=self.sites.get,
                credentials=self.credentials,
                generation=self.generation,
                namespaces=self.settings.namespaces,
                opener=self.open_objects,
                held=self.listings.held,
            ),
        )

    @property
    def resolver(self) -> Resolver:
        """Ref + path → bytes, from the index when it can, else live (service token)."""
        return self._once(
            "resolver",
            lambda: Resolver(self.index, self.service_reader, self.sites.get, self.credentials),
        )

    @property
    def commit_facts(self) -> LruCache[tuple[str, int, str, str], Any]:
        """What the web UI learnt from GitLab that a commit sha fixes for good — a README card,
        the last commit touching a path — keyed by (kind, dataset id, sha, path)."""
        return self._once("commit_facts", lambda: LruCache(COMMIT_FACTS_ENTRIES))

    @property
    def receiver(self) -> Receiver:
        """Durable acceptance of work: journal, intake, hand-over, background drainer/worker."""
        return self._once(
            "receiver",
            lambda: Receiver(self.settings.data_dir, self.settings.redis_url, self._on_hand_over),
        )

    # ------------------------------------------------------------------ lifecycle

    def install_jobs(self) -> None:
        """Make this process's jobs (RQ or the embedded worker) run with `job_context`."""
        jobs.install(lambda: self.job_context)

    def start_scheduler(self) -> None:
        """Start the embedded default's periodic reconcile (one per interval across processes)."""
        interval = self.settings.reconcile_interval
        if not (self.settings.embedded and interval and self.settings.gitlab_url):
            return
        receiver = self.receiver
        with self._lock:
            if self._scheduler is not None:
                return
            self._scheduler = journal_scheduler(receiver.submit, interval)
        self._scheduler.start()

    def close(self) -> None:
        """Stop the threads and close what was opened; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            scheduler, self._scheduler = self._scheduler, None
            built, self._built = self._built, {}
        if scheduler is not None:
            scheduler.stop()
        jobs.clear()
        receiver = built.get("receiver")
        if receiver is not None:
            receiver.stop()
        index = built.get("index")
        if index is not None:
            index.close()
