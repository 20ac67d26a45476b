"""HTTPS on the listener (throwaway self-signed certificate) and several keys per customer."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge import config_loader as configmod
from bridge.errors import BridgeError
from bridge.listener import tls_context
from bridge.publisher import InMemoryPublisher
from bridge.receiver import build_app
from tests.support import TEST_KEY, body_bytes, make_config, missing, sample

OLD_KEY = "OldKeyStillValid1"
NEW_KEY = "NewKeyRotatedIn22"


async def test_every_key_of_a_customer_is_accepted(aiohttp_client: Any) -> None:
    config = make_config(customer={"customer_key": NEW_KEY, "extra_keys": [OLD_KEY, TEST_KEY]})
    publisher = InMemoryPublisher()
    client = await aiohttp_client(build_app(config, publisher))
    appt = sample("appointment")
    for key in (NEW_KEY, OLD_KEY, TEST_KEY):
        resp = await client.post(
            "/apievents", data=body_bytes(appt), headers={**appt["headers"], "Authorization": key}
        )
        assert resp.status == 200, key
    # A retired key (removed from the file) and near-misses are refused.
    for key in ("RetiredKey000000", OLD_KEY[:-1], OLD_KEY + "x"):
        resp = await client.post(
            "/apievents", data=body_bytes(appt), headers={**appt["headers"], "Authorization": key}
        )
        assert resp.status == 401, key
    bodies = {m.body for m in publisher.messages}
    assert len(publisher.messages) == 3 * len(appt["body"])
    assert len(bodies) == len(appt["body"])  # same rows ⇒ same ids, whichever key sent them


def test_a_key_may_belong_to_one_customer_only() -> None:
    with pytest.raises(BridgeError, match="shares a customer key"):
        configmod.parse(
            "customers:\n"
            f"  - {{name: a, customer_key: {NEW_KEY}}}\n"
            f"  - {{name: b, customer_key: other-key, extra_keys: [{NEW_KEY}]}}\n",
            env={},
        )


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway certificate for localhost / 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_serves_https_with_listen_tls(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    config = make_config(listen={"tls": {"cert": str(cert), "key": str(key)}})
    context = tls_context(config.listen.tls)  # the context `serve` uses
    assert context is not None
    publisher = InMemoryPublisher()
    runner = web.AppRunner(build_app(config, publisher), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        appt = sample("appointment")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(
                f"https://127.0.0.1:{port}/apievents",
                data=body_bytes(appt),
                headers=appt["headers"],
                ssl=trust,
            ) as resp:
                assert resp.status == 200
                assert await resp.json() == {"accepted": len(appt["body"])}
            # A client that does not trust the certificate cannot talk to it at all.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.post(
                    f"https://127.0.0.1:{port}/healthz", ssl=ssl.create_default_context()
                )
            # Plain HTTP on the TLS port is not served.
            with pytest.raises(aiohttp.ClientError):
                await session.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        await runner.cleanup()
    assert len(publisher.messages) == len(appt["body"])


def test_unreadable_certificate_is_one_clear_error(tmp_path: Path) -> None:
    config = make_config(
        listen={"tls": {"cert": str(tmp_path / "missing.crt"), "key": str(tmp_path / "x.key")}}
    )
    with pytest.raises(BridgeError, match=r"^listen\.tls: cannot load certificate or key"):
        tls_context(config.listen.tls)


def test_a_file_that_is_not_the_key_is_named_in_plain_words(
    self_signed: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, _ = self_signed
    config = make_config(listen={"tls": {"cert": str(cert), "key": str(cert)}})
    with pytest.raises(BridgeError) as caught:
        tls_context(config.listen.tls)
    assert str(caught.value) == (
        "listen.tls: cannot load certificate or key "
        f"(not a PEM certificate chain and its key: {cert}, {cert})"
    )
