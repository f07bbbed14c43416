"""Codec: every type, word and byte order, scale and scale factors, not-implemented markers, ranges."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.codec import decode_point, decode_raw, encode_point, encode_raw
from drivers.errors import CodecError
from drivers.maps import Point
from edgectl.glossary import Quality


def pt(type_: str, **kw: object) -> Point:
    from drivers.codec import words_for

    return Point(name="x", table="holding", address=0, type=type_, words=words_for(type_, kw.get("size")), **kw)


@pytest.mark.parametrize(
    ("type_", "value", "big", "little"),
    [
        ("u16", 0x1234, [0x1234], [0x1234]),
        ("i16", -2, [0xFFFE], [0xFFFE]),
        ("u32", 0x12345678, [0x1234, 0x5678], [0x5678, 0x1234]),
        ("i32", -2, [0xFFFF, 0xFFFE], [0xFFFE, 0xFFFF]),
        ("u64", 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708], [0x0708, 0x0506, 0x0304, 0x0102]),
        ("i64", -1, [0xFFFF] * 4, [0xFFFF] * 4),
        ("f32", 1.5, [0x3FC0, 0x0000], [0x0000, 0x3FC0]),
        ("f64", -2.0, [0xC000, 0, 0, 0], [0, 0, 0, 0xC000]),
    ],
)
def test_word_order_variants(type_: str, value: float, big: list[int], little: list[int]) -> None:
    assert encode_raw(type_, value, word_order="big") == big
    assert encode_raw(type_, value, word_order="little") == little
    assert decode_raw(type_, big, word_order="big") == value
    assert decode_raw(type_, little, word_order="little") == value


def test_byte_swap_within_words() -> None:
    # BADC: bytes swapped inside each word, words high first
    assert encode_raw("u32", 0x11223344, byte_order="little") == [0x2211, 0x4433]
    assert decode_raw("u32", [0x2211, 0x4433], byte_order="little") == 0x11223344
    # DCBA: both swapped
    assert decode_raw("u32", [0x4433, 0x2211], word_order="little", byte_order="little") == 0x11223344


def test_strings_pad_and_untrusted_bytes() -> None:
    words = encode_raw("string", "AB-12", size=4)
    assert words == [0x4142, 0x2D31, 0x3200, 0]
    assert decode_raw("string", words) == "AB-12"
    # control characters from a device never reach the caller raw
    assert decode_raw("string", [0x4107, 0x4200]) == "A?B"
    with pytest.raises(CodecError):
        encode_raw("string", "123456789", size=4)


@pytest.mark.parametrize(
    ("type_", "marker_words"),
    [("u16", [0xFFFF]), ("i16", [0x8000]), ("u32", [0xFFFF, 0xFFFF]), ("i32", [0x8000, 0]),
     ("enum16", [0xFFFF]), ("bitfield32", [0xFFFF, 0xFFFF]), ("acc32", [0, 0]), ("f32", [0x7FC0, 0]),
     ("u64", [0xFFFF] * 4), ("sunssf", [0x8000])],
)
def test_not_implemented_markers_decode_to_none(type_: str, marker_words: list[int]) -> None:
    pv = decode_point(pt(type_), marker_words)
    assert pv.value is None and pv.quality == Quality.INVALID


def test_markers_can_be_turned_off_or_replaced() -> None:
    assert decode_point(pt("u16", na_markers=False), [0xFFFF]).value == 0xFFFF
    assert decode_point(pt("u16", na=(0,)), [0]).quality == Quality.INVALID
    assert decode_point(pt("u16", na=(0,)), [0xFFFF]).value == 0xFFFF


def test_scale_offset_and_scale_factor() -> None:
    assert decode_point(pt("i16", scale=0.1), [0xFFF6]).value == pytest.approx(-1.0)
    assert decode_point(pt("u16", scale=0.5, offset=-40.0), [100]).value == pytest.approx(10.0)
    p = pt("i16", sf="W_SF")
    assert decode_point(p, [1234], sf=-1).value == pytest.approx(123.4)
    assert decode_point(p, [1234], sf=2).value == pytest.approx(123400.0)
    # scale factor unknown or absurd: no number at all rather than one off by powers of ten
    assert decode_point(p, [1234], sf=None).quality == Quality.INVALID
    assert decode_point(p, [1234], sf=-32768).quality == Quality.INVALID
    assert encode_point(p, 123.4, sf=-1) == [1234]


def test_valid_range_and_nonfinite_values() -> None:
    p = pt("f32", min=-10.0, max=10.0)
    assert decode_point(p, encode_raw("f32", 11.0)).quality == Quality.INVALID
    assert decode_point(p, encode_raw("f32", math.inf)).quality == Quality.INVALID
    assert decode_point(p, encode_raw("f32", 9.5)).value == 9.5
    with pytest.raises(CodecError, match="outside valid range"):
        encode_point(p, 10.5)
    with pytest.raises(CodecError, match="finite"):
        encode_point(p, math.nan)


def test_integer_overflow_is_refused_not_clamped() -> None:
    with pytest.raises(CodecError, match="outside u16 range"):
        encode_point(pt("u16", scale=0.1), 7000.0)
    with pytest.raises(CodecError):
        encode_raw("i16", 40000)


def test_strict_enum_rejects_unknown_codes() -> None:
    p = pt("enum16", enum={0: "off", 1: "on"}, strict_enum=True)
    assert decode_point(p, [1]).value == 1
    assert decode_point(p, [7]).quality == Quality.INVALID


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["big", "little"]), st.sampled_from(["big", "little"]))
def test_i32_roundtrip_any_order(value: int, wo: str, bo: str) -> None:
    words = encode_raw("i32", value, word_order=wo, byte_order=bo)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode_raw("i32", words, word_order=wo, byte_order=bo) == value


@given(st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), st.sampled_from(["u32", "i32", "f32", "bitfield32"]))
def test_any_words_decode_without_crashing(words: list[int], type_: str) -> None:
    pv = decode_point(pt(type_, min=-1e6, max=1e6) if type_ != "bitfield32" else pt(type_), words)
    if pv.quality == Quality.GOOD:
        assert pv.value is not None and (not isinstance(pv.value, float) or math.isfinite(pv.value))
    else:
        assert pv.value is None


@given(st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
       st.sampled_from(["u16", "i16", "u32", "i32", "f32", "u64", "i64", "f64", "enum16", "bitfield32", "acc32"]),
       st.sampled_from(["big", "little"]), st.sampled_from(["big", "little"]),
       st.sampled_from([1.0, 0.1, 0.001]), st.booleans())
def test_compiled_decoder_equals_reference_decoder(words: list[int], type_: str, wo: str, bo: str, scale: float,
                                                  ranged: bool) -> None:
    from drivers.codec import TYPE_WORDS, compile_decoder

    kw: dict[str, object] = {"word_order": wo, "byte_order": bo}
    if not type_.startswith(("enum", "bitfield")):
        kw["scale"] = scale
    if ranged:
        kw.update(min=-1000.0, max=1000.0)
    p = pt(type_, **kw)
    regs = words[: TYPE_WORDS[type_]]
    assert compile_decoder(p)(regs, None) == decode_point(p, regs)
