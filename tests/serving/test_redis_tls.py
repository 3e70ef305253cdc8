"""The API over TLS (``rediss://``) to a real redis-server with a TLS port only and a
certificate signed by a test CA: lookups work and the server's certificate is checked
(a URL without the CA is refused with 503, not served in clear)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis

from segstream.adapters.endpoints import port_answers
from segstream.sources.stack import free_port, redis_binary
from tests.support.api import Api
from tests.support.archetypes import put_users
from tests.support.tls import tls_files

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    d = tmp_path_factory.mktemp("tls")
    ca, crt, key = tls_files(d)
    port = free_port()
    with open(d / "redis.log", "ab") as log:
        proc = subprocess.Popen([redis_binary(), "--port", "0", "--tls-port", str(port),
                                 "--bind", "127.0.0.1", "--tls-cert-file", str(crt),
                                 "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                                 "--tls-auth-clients", "no", "--save", "",
                                 "--appendonly", "no", "--dir", str(d)], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if port_answers("127.0.0.1", port):
                break
            assert proc.poll() is None, (d / "redis.log").read_text()
            subprocess.run(["sleep", "0.1"], check=True)
        yield f"rediss://127.0.0.1:{port}/0", ca
    finally:
        proc.terminate()
        proc.wait(10)


def test_lookups_over_tls(api_factory: Callable[..., Api], tls_redis: tuple[str, Path]
                          ) -> None:
    url, ca = tls_redis
    verified = f"{url}?ssl_ca_certs={quote(str(ca))}"
    put_users(redis.Redis.from_url(verified), {"user-0": 0, "user-1": 1})
    api = api_factory(redis_url=verified)
    r = httpx.get(f"{api.url}/v1/users/user-1/segment", headers=api.headers)
    assert r.status_code == 200, r.text
    assert r.json()["segment_id"] == 20
    r = httpx.post(f"{api.url}/v1/users/segments:batch",
                   json={"user_ids": ["user-0", "ghost"]}, headers=api.headers)
    assert [a["segment_id"] for a in r.json()["results"]] == [10]
    assert r.json()["missing"] == ["ghost"]


def test_an_unverifiable_certificate_is_503(api_factory: Callable[..., Api],
                                            tls_redis: tuple[str, Path]) -> None:
    url, _ = tls_redis  # no CA given: the test CA is not trusted
    api = api_factory(redis_url=url)
    r = httpx.get(f"{api.url}/v1/users/user-1/segment", headers=api.headers)
    assert r.status_code == 503, r.text
