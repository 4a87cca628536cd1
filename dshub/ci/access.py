"""How a job reaches its dataset's remote, in either access mode, for the length of a block.

Direct mode (S3 or a local directory): the storage keys go into the process environment,
where DVC and boto read them (`environment.storage_environment`). Proxy mode (dshub's DVC
remote over http): the CI job token goes into `.dvc/config.local` for the block only
(`proxy.job_token_auth`), after one request proves dshub accepts it; the block gets the
`proxy.DshubRemote` that presence checks ask instead of DVC.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dshub.ci.environment import Access, apply_environment, storage_environment
from dshub.ci.proxy import DshubRemote, check_access, is_proxy_url, job_token_auth, ssl_verify_of
from dshub.ci.remote import RemoteConfig
from dshub.config import CiVariables

_WHY_CI_JOB = (
    "GitLab gives every job its CI_JOB_TOKEN; in proxy mode the job reaches dshub's DVC "
    "remote with it (run the job in GitLab CI)"
)


@contextmanager
def remote_access(
    root: Path,
    remote: RemoteConfig,
    variables: CiVariables,
    access: Access,
    say: Callable[[str], None] = print,
) -> Iterator[DshubRemote | None]:
    """Within the block DVC (and the job) can reach `remote` with the credentials of `access`.

    Yields dshub's remote in proxy mode (for batch presence checks), None in direct mode."""
    if not is_proxy_url(remote.url):
        apply_environment(os.environ, storage_environment(variables, remote.url, access))
        yield None
        return
    token = variables.require("CI_JOB_TOKEN", _WHY_CI_JOB)
    ssl_verify = ssl_verify_of(dict(remote.options))
    check_access(remote.url, token, ssl_verify)
    say(f"proxy mode: reaching {remote.url} with this job's CI_JOB_TOKEN")
    with job_token_auth(root, remote.name, remote.url, token):
        yield DshubRemote(remote.url, token, ssl_verify)
