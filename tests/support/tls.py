"""TLS material for a redis-server with a TLS port only: a test CA and a certificate it
signed for 127.0.0.1."""

from __future__ import annotations

import subprocess
from pathlib import Path


def tls_files(d: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signed for 127.0.0.1 (1 day), made by openssl in
    ``d``: (ca.crt, r.crt, r.key)."""
    ca_key, ca, key, csr, crt = (d / n for n in ("ca.key", "ca.crt", "r.key", "r.csr",
                                                 "r.crt"))
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "1", "-subj", "/CN=segstream-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
         "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", crt, "-days", "1", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    return ca, crt, key
