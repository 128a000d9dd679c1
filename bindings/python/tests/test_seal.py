"""Sealed regions through the Python binding (docs/sealed.md): seal and
unseal round trips, a sealed buffer refusing access, tampering caught with
the chunk named, key providers and key files, and digests recomputed with
the standard library's hmac from their definition."""

import ctypes
import hashlib
import hmac
import os
import struct

import pytest

import gms

from conftest import needs

pytestmark = needs("gms_seal", "gms_digest")

KEK = bytes(range(32))
CHUNK = 65536
LEAF = 16384


def provider(tenant):
    return KEK if tenant == "acme" else None


def digest_ref(kek, data):
    kd = hmac.new(kek, b"gms-digest-key-v1", hashlib.sha256).digest()
    leaves = b"".join(hmac.new(kd, data[i:i + LEAF], hashlib.sha256).digest()
                      for i in range(0, len(data), LEAF))
    return hmac.new(kd, b"gms-digest-v1" + struct.pack("<Q", len(data)) + leaves,
                    hashlib.sha256).digest()


def test_round_trip_and_refusals(rt, ctx):
    rt.on_key_request(provider)
    data = os.urandom(2 * CHUNK + 5)
    b = ctx.alloc(len(data))
    b.write(data)
    assert not b.sealed
    b.seal()
    assert b.sealed
    for call in (lambda: b.read(), lambda: b.write(b"x"), lambda: b.fill(0), lambda: b.ptr,
                 lambda: b.digest()):
        with pytest.raises(gms.AccessDenied, match="is sealed"):
            call()
    with pytest.raises(gms.InvalidArgument, match="sealed already"):
        b.seal()
    b.unseal()
    assert not b.sealed
    assert b.read() == data
    b.free()


def test_tamper_names_the_chunk(rt, ctx):
    rt.on_key_request(provider)
    data = os.urandom(3 * CHUNK)
    b = ctx.alloc(len(data))
    b.write(data)
    addr = b.ptr  # the host backend's memory, reachable before the seal
    b.seal()
    mem = (ctypes.c_uint8 * len(data)).from_address(addr)
    before = bytes(mem)
    mem[CHUNK + 10] ^= 0x40
    with pytest.raises(gms.Corruption, match=r"chunk 1 \(bytes \[65536, 131072\)\)"):
        b.unseal()
    after = bytearray(mem)
    after[CHUNK + 10] ^= 0x40
    assert bytes(after) == before  # nothing touched
    assert b.sealed
    mem[CHUNK + 10] ^= 0x40
    b.unseal()
    assert b.read() == data


def test_key_sources(rt, ctx, tmp_path):
    b = ctx.alloc(100)
    with pytest.raises(gms.AccessDenied, match="no key-encryption key"):
        b.seal()
    rt.on_key_request(lambda tenant: None)
    with pytest.raises(gms.AccessDenied, match="key provider refused"):
        b.seal()
    rt.on_key_request(lambda tenant: 1 / 0)  # an exception refuses too
    with pytest.raises(gms.AccessDenied):
        b.seal()
    assert not b.sealed
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"short")
    with pytest.raises(gms.InvalidArgument, match="32 raw bytes or 64 hex digits"):
        rt.seal_key_file("acme", bad)
    good = tmp_path / "acme.key"
    good.write_text(KEK.hex() + "\n")
    rt.seal_key_file("acme", good)
    b.write(b"y" * 100)
    b.seal()
    b.unseal()
    assert b.read() == b"y" * 100
    assert b.digest() == digest_ref(KEK, b"y" * 100)


def test_digest_matches_definition(rt, ctx):
    rt.on_key_request(provider)
    data = os.urandom(3 * LEAF + 77)
    b = ctx.alloc(len(data))
    b.write(data)
    assert b.digest() == digest_ref(KEK, data)
    assert b.digest(offset=9, length=LEAF + 1) == digest_ref(KEK, data[9:9 + LEAF + 1])
    assert b.digest(offset=5, length=0) == digest_ref(KEK, b"")
    with pytest.raises(gms.OutOfBounds):
        b.digest(offset=1, length=len(data))
