"""Microsoft 365 profile photos through msgraph-sdk against the Graph stand-in over real loopback HTTP: the small size
first, the largest available when that size does not exist, and a 404 read as "no photo" rather than an error."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from integrations.graph.adapter import PROFILE_PHOTO_SIZE, GraphProfilePhotos
from scheduling.errors import IntegrationAuthError, IntegrationUnavailable
from tests.fakes.graph import FakeGraphServer, generated_png, serve_fake_graph
from tests.integration.test_graph_fake_and_client import HOST, connected

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:msgraph"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:kiota_abstractions"),
]


def jpeg_bytes() -> bytes:
    """Bytes framed as a JPEG file (SOI, a JFIF APP0 segment, EOI) around random content: nothing here decodes it."""
    return (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + secrets.token_bytes(300) + b"\xff\xd9"
    )


async def test_a_photo_is_read_at_96x96_with_the_apps_token() -> None:
    fake = FakeGraphServer()
    photo = jpeg_bytes()
    fake.set_photo(HOST, photo)
    async with connected(fake) as graph:
        assert await GraphProfilePhotos(graph.client).profile_photo(HOST) == photo
        [asked] = fake.graph_requests("/$value")
        assert asked.path == f"/v1.0/users/{HOST}/photos/{PROFILE_PHOTO_SIZE}/$value"
        assert asked.headers["Authorization"].startswith("Bearer fake-graph-")
        assert asked.status == 200


async def test_an_account_without_a_photo_is_no_photo_not_an_error() -> None:
    fake = FakeGraphServer()
    async with connected(fake) as graph:
        assert await GraphProfilePhotos(graph.client).profile_photo(HOST) is None
        # Both Graph's small size and the largest available were asked; both answered 404.
        assert [(entry.path, entry.status) for entry in fake.graph_requests("/$value")] == [
            (f"/v1.0/users/{HOST}/photos/96x96/$value", 404),
            (f"/v1.0/users/{HOST}/photo/$value", 404),
        ]


async def test_a_photo_uploaded_smaller_than_96x96_is_read_at_its_own_size() -> None:
    fake = FakeGraphServer()
    small = generated_png(48)
    fake.set_photo(HOST, small, content_type="image/png", pixels=48)
    async with connected(fake) as graph:
        assert await GraphProfilePhotos(graph.client).profile_photo(HOST) == small
        assert [entry.status for entry in fake.graph_requests("/$value")] == [404, 200]


async def test_graph_failures_other_than_404_are_errors_not_a_missing_photo() -> None:
    fake = FakeGraphServer()
    fake.set_photo(HOST, jpeg_bytes())
    async with connected(fake) as graph:
        photos = GraphProfilePhotos(graph.client)
        fake.fail_next(503, retry_after=7)
        with pytest.raises(IntegrationUnavailable) as unavailable:
            await photos.profile_photo(HOST)
        assert unavailable.value.retry_after_seconds == 7
        fake.fail_next(403, message="Insufficient privileges to complete the operation.")
        with pytest.raises(IntegrationAuthError, match="Insufficient privileges"):
            await photos.profile_photo(HOST)


async def test_the_stand_in_answers_photos_like_graph_does() -> None:
    fake = FakeGraphServer()
    photo = jpeg_bytes()
    fake.set_photo(HOST, photo, pixels=240)
    fake.tokens["a-token"] = datetime.now(UTC) + timedelta(hours=1)
    bearer = {"Authorization": "Bearer a-token"}
    async with serve_fake_graph(fake) as running, aiohttp.ClientSession() as session:
        base = f"{running.graph_base_url}/users/{HOST}"
        async with session.get(f"{base}/photos/96x96/$value") as anonymous:
            assert anonymous.status == 401
            assert (await anonymous.json())["error"]["code"] == "InvalidAuthenticationToken"
        for path in ("photo/$value", "photos/48x48/$value", "photos/240x240/$value"):
            async with session.get(f"{base}/{path}", headers=bearer) as found:
                assert found.status == 200, path
                assert found.content_type == "image/jpeg"
                assert await found.read() == photo
        # Not uploaded that large, and a size Microsoft 365 does not keep: both 404 with Graph's error body.
        for path in ("photos/360x360/$value", "photos/100x100/$value"):
            async with session.get(f"{base}/{path}", headers=bearer) as missing:
                assert missing.status == 404, path
                assert (await missing.json())["error"]["code"] == "ImageNotFound"
        async with session.get(f"{running.graph_base_url}/users/nobody@msp.example/photo/$value", headers=bearer) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "ImageNotFound"


def test_the_generated_png_is_a_well_formed_png() -> None:
    import struct
    import zlib

    png = generated_png(20, (10, 20, 30))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, offset = [], 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        chunks.append((kind, data))
        offset += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">II", chunks[0][1][:8]) == (20, 20)
    rows = zlib.decompress(chunks[1][1])
    assert len(rows) == 20 * (1 + 20 * 3)
    assert rows[1:4] == bytes((10, 20, 30)), "the corner has the given colour"
