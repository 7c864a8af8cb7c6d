"""The ``::waveui`` protocol: the fields a directive line gives, and the cheap reader of raw output lines."""

from __future__ import annotations

from waveui.run.directives import MESSAGE_MAX, parse_directive, read_directive



def test_parse_directive_fields():
    assert parse_directive('::waveui progress=40 cost=0.12 iteration=3 message="writing tests"') == {
        "progress": 40.0, "cost": 0.12, "iterations": 3, "message": "writing tests"}
    assert parse_directive("  ::waveui iterations=7 progress=100\r\n") == {"iterations": 7, "progress": 100.0}
    assert parse_directive("::waveui message='it is \"quoted\"'") == {"message": 'it is "quoted"'}
    assert parse_directive("::waveui progress=12.5% cost=$1.5") == {"progress": 12.5, "cost": 1.5}
    assert parse_directive("::waveui message=") == {"message": ""}


def test_parse_directive_bad_values_and_other_lines():
    assert parse_directive("::waveui progress=140 cost=-1 iteration=2.5 message=ok") == {"message": "ok"}
    assert parse_directive("::waveui progress=nan cost=inf iterations=x") == {}
    assert parse_directive("::waveui colour=red progress progress=5") == {"progress": 5.0}
    assert parse_directive('::waveui message="unbalanced') == {}
    assert parse_directive("::waveui") == {}
    assert parse_directive("hello ::waveui progress=5") is None
    assert parse_directive("::waveuix progress=5") is None
    assert parse_directive("") is None


def test_parse_directive_message_is_cleaned_and_capped():
    assert parse_directive("::waveui message='a\tb\x1b[31m'") == {"message": "a b [31m"}
    long = parse_directive("::waveui message=" + "x" * 5000)["message"]
    assert len(long) == MESSAGE_MAX == 1000 and long.endswith("…")


# --- read_directive -----------------------------------------------------------


def test_read_directive_decodes_a_raw_line():
    assert read_directive(b"::waveui progress=40 message=\"caf\xc3\xa9\"\n") == {"progress": 40.0, "message": "café"}
    assert read_directive(b"  ::waveui cost=0.5\r\n") == {"cost": 0.5}
    assert read_directive(b"::waveui message=\xff") == {"message": "\ufffd"}  # bad UTF-8 is replaced, not fatal


def test_read_directive_leaves_other_lines_alone():
    for line in (b"", b"plain output", b"::waveuix progress=5", b"hello ::waveui progress=5",
                 b"x" * 100 + b"::waveui progress=5", b'{"type":"result","total_cost_usd":1}'):
        assert read_directive(line) is None, line
