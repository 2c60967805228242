"""The Ed25519 check ``balance-payment`` runs *inside* the program, in pure Python.

The program does not use the Ed25519 precompile.  It verifies ``recover_info`` with curve25519 syscalls
(``utils/ed25519.rs``, a copy of stegaBOB/solana_ed25519_verify), which behave like curve25519-dalek:

1. ``A`` (the user's pubkey) and ``R`` (``sig[0:32]``) must decompress to curve points, else the program
   answers ``SignatureFormatInvalid``.  Decompression takes ``y`` from the low 255 bits *without* requiring
   ``y < p`` and ignores a sign bit on ``x = 0`` (dalek's ``CompressedEdwardsY::decompress``).
2. ``S = sig[32:64] mod L`` -- a non-canonical ``S`` is reduced, not refused.
3. ``k = SHA-512(R ‖ A ‖ text) mod L``.
4. Valid iff ``compress([S]B - [k]A)`` equals the 32 signature bytes of ``R`` (cofactorless; a non-canonical
   encoding of ``R`` therefore never matches), else ``SignatureMismatch``.

Every signature a standard (RFC 8032) signer produces passes; the program additionally accepts a few
malleated ones (``S + L``) that strict verifiers such as solders refuse.  This module reproduces that exact
rule so the stand-in answers what the chain would.  Speed: two variable-base scalar multiplications in Python,
a few milliseconds per check, which is fine for a test double.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import TypeAlias

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)

# Extended twisted-Edwards coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z.
Point: TypeAlias = tuple[int, int, int, int]
_IDENTITY: Point = (0, 1, 1, 0)


class Verdict(StrEnum):
    """Outcome of :func:`verify_cofactorless`, mapped by the program to its errors."""

    OK = "ok"
    FORMAT_INVALID = "format_invalid"  # A or R is not a curve point -> SignatureFormatInvalid
    MISMATCH = "mismatch"  # the equation does not hold -> SignatureMismatch


def _recover_x(y: int, sign: int) -> int | None:
    """x for ``y`` (already reduced) with parity ``sign``; ``None`` when ``y`` is not on the curve."""
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    # x = sqrt(u / v), computed as (u v^3)(u v^7)^((p-5)/8)
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    vx2 = (v * x * x) % P
    if vx2 == u:
        pass
    elif vx2 == (-u) % P:
        x = (x * _SQRT_M1) % P
    else:
        return None
    if x & 1 != sign:
        x = (-x) % P  # for x == 0 this stays 0: dalek accepts the "negative zero" encoding
    return x


def decompress(encoded: bytes) -> Point | None:
    """The point a 32-byte encoding names, dalek-style (non-canonical ``y`` accepted); ``None`` if invalid."""
    if len(encoded) != 32:
        return None
    raw = int.from_bytes(encoded, "little")
    sign = raw >> 255
    y = (raw & ((1 << 255) - 1)) % P
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, (x * y) % P)


def compress(point: Point) -> bytes:
    """Canonical 32-byte encoding of ``point``."""
    x_, y_, z, _ = point
    zinv = pow(z, P - 2, P)
    x = (x_ * zinv) % P
    y = (y_ * zinv) % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _add(p1: Point, p2: Point) -> Point:
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = ((y1 - x1) * (y2 - x2)) % P
    b = ((y1 + x1) * (y2 + x2)) % P
    c = (2 * D * t1 * t2) % P
    d = (2 * z1 * z2) % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return ((e * f) % P, (g * h) % P, (f * g) % P, (e * h) % P)


def _negate(point: Point) -> Point:
    x, y, z, t = point
    return ((-x) % P, y, z, (-t) % P)


def _multiply(scalar: int, point: Point) -> Point:
    result = _IDENTITY
    addend = point
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        scalar >>= 1
    return result


_BASE_Y = (4 * pow(5, P - 2, P)) % P
_BASE_X = _recover_x(_BASE_Y, 0)
assert _BASE_X is not None
BASE: Point = (_BASE_X, _BASE_Y, 1, (_BASE_X * _BASE_Y) % P)


def verify_cofactorless(public_key: bytes, signature: bytes, message: bytes) -> Verdict:
    """The program's check of ``signature`` by ``public_key`` over ``message`` (see the module docstring)."""
    if len(signature) != 64:
        return Verdict.FORMAT_INVALID
    r_bytes = signature[:32]
    a_point = decompress(public_key)
    if a_point is None or decompress(r_bytes) is None:
        return Verdict.FORMAT_INVALID
    s = int.from_bytes(signature[32:], "little") % L
    k = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little") % L
    r_prime = _add(_multiply(s, BASE), _negate(_multiply(k, a_point)))
    return Verdict.OK if compress(r_prime) == r_bytes else Verdict.MISMATCH
