"""Hostile shards, manifests, patterns and mixes: a right result or a clear error, in bounded
time and memory.

The tar cases write valid shards with ``tarfile`` and then damage them as an attacker or a
bad disk would: sizes that are negative, huge, not numbers or past the end of the file,
metadata members of gigabytes, checksums that do not match, files cut off anywhere. The
reader either gives what ``tarfile`` gives or refuses with a ``ValueError`` that names the
shard and the byte offset of the member.
"""

from __future__ import annotations

import io
import itertools
import re
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_streams_scale import version_1_file
from torch_balance.cli import main
from torch_balance.streams import Manifest
from torch_balance.streams.tar import tar_members, tar_samples

# ---- shards written here, then damaged ---------------------------------------------------------

SAMPLES = [("a", b"png-a" * 40, b"1"), ("b", b"png-b" * 200, b"0"), ("c", b"", b"2")]


def _shard_bytes(fmt: int = tarfile.GNU_FORMAT, samples: list | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for key, image, label in samples or SAMPLES:
            for ext, data in (("png", image), ("cls", label)):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _headers(data: bytes) -> list[int]:
    """The byte offsets of the headers of ``data`` (a valid archive), in order."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [member.offset for member in tar.getmembers()]


def _set(data: bytearray, at: int, start: int, value: bytes, *, fix: bool = True) -> None:
    """Write ``value`` into the header at byte ``at``, field at ``start``; fix its checksum."""
    data[at + start : at + start + len(value)] = value
    if fix:
        header = bytes(data[at : at + 512])
        unsigned, _ = tarfile.calc_chksums(header)
        data[at + 148 : at + 155] = b"%06o\0" % unsigned


def _write(tmp_path: Path, data: bytes | bytearray, name: str = "s.tar") -> str:
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return str(path)


def _refused(path: str, match: str = "") -> str:
    with pytest.raises(ValueError, match=match) as caught:
        list(tar_samples(path))
    message = str(caught.value)
    assert message.startswith("shard: ") and repr(path) in message and " at byte " in message
    return message


def _theirs(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]


def test_a_valid_shard_reads_like_tarfile(tmp_path: Path) -> None:
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        data = _shard_bytes(fmt)
        ours = list(tar_members(io.BytesIO(data)))
        assert ours == _theirs(data)


def test_a_negative_octal_size_is_refused_not_looped(tmp_path: Path) -> None:
    # The old reader padded -512 and seeked back onto the same header, forever.
    data = bytearray(_shard_bytes())
    _set(data, _headers(bytes(data))[0], 124, b"-0000001000\0")
    path = _write(tmp_path, data)
    with open(path, "rb") as stream, pytest.raises(ValueError, match=r"at byte 0: .*not an oct"):
        list(itertools.islice(tar_members(stream, lambda n: False, where=path), 50))


@pytest.mark.parametrize(
    "field,match",
    [
        (b"\x80" + (2**48).to_bytes(11, "big"), "only .* remain"),
        (b"\x80" + (2**60).to_bytes(11, "big"), "only .* remain"),
        (b"\xff" * 12, "negative size"),
        (b"zz7\0\0\0\0\0\0\0\0\0", "not an octal number"),
    ],
)
def test_hostile_sizes_are_refused_before_anything_is_read(
    tmp_path: Path, field: bytes, match: str
) -> None:
    data = bytearray(_shard_bytes())
    at = _headers(bytes(data))[1]
    _set(data, at, 124, field)
    message = _refused(_write(tmp_path, data), match)
    assert f"at byte {at}:" in message


@pytest.mark.parametrize("kind,size", [(b"x", 2**40), (b"L", 2**33), (b"K", 2**20 + 1)])
def test_metadata_members_have_a_size_limit(tmp_path: Path, kind: bytes, size: int) -> None:
    data = bytearray(_shard_bytes())
    at = _headers(bytes(data))[0]
    _set(data, at, 156, kind)
    _set(data, at, 124, b"%011o\0" % size)
    _refused(_write(tmp_path, data), "max_meta_size=1,048,576")


def test_the_metadata_limit_is_a_keyword(tmp_path: Path) -> None:
    long_name = "k" * 3000 + ".cls"
    samples = [("k" * 3000, b"img", b"1")]
    path = _write(tmp_path, _shard_bytes(tarfile.GNU_FORMAT, samples))
    assert [s["cls"] for s in tar_samples(path)] == [b"1"]
    with pytest.raises(ValueError, match="max_meta_size=1,000 bytes"):
        list(tar_samples(path, max_meta_size=1000))
    with pytest.raises(ValueError, match=r"at most 2 bytes \(max_member_size"):
        list(tar_samples(path, max_member_size=2))
    assert long_name.endswith(".cls")


@pytest.mark.parametrize("cut", [100, 512 + 100, 1536 + 7, -1024 - 1])
def test_a_shard_cut_off_anywhere_is_refused(tmp_path: Path, cut: int) -> None:
    data = _shard_bytes()
    # The end-of-archive blocks are zeros: a cut inside them loses nothing, so cut before.
    end = _headers(data)[-1] + 1024
    cut = cut if cut > 0 else end + cut
    _refused(_write(tmp_path, data[:cut]), "cut off|remain")


def test_a_shard_cut_off_inside_a_skipped_member_is_refused(tmp_path: Path) -> None:
    data = _shard_bytes()
    at = _headers(data)[2]  # b.png, 1000 bytes
    path = _write(tmp_path, data[: at + 512 + 300])
    with pytest.raises(ValueError, match=f"at byte {at}: member 'b.png' of 1,024 bytes"):
        Manifest.scan_tar(path)


def test_a_header_with_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    data = bytearray(_shard_bytes())
    at = _headers(bytes(data))[3]
    _set(data, at, 0, b"garbage", fix=False)
    _refused(_write(tmp_path, data), "checksum")
    garbage = bytearray(b"\x07" * 2048)
    _refused(_write(tmp_path, garbage, "g.tar"), "checksum")


def test_a_pipe_with_a_huge_size_is_read_in_bounded_pieces() -> None:
    data = bytearray(_shard_bytes())
    _set(data, 0, 124, b"\x80" + (2**60).to_bytes(11, "big"))

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(bytes(data))

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            return self.inner.readinto(buffer)

    stream = io.BufferedReader(Pipe())
    assert not stream.seekable()
    with pytest.raises(ValueError, match="cut off after"):
        list(tar_members(stream, where="pipe"))


@pytest.mark.parametrize(
    "label,match",
    [
        (b"", "non-empty label"),
        (b"\xff\xfe", "UTF-8"),
        (b"7" * 5000, "max_label_size"),
        (b"9" * 40, "fits in 64 bits"),
    ],
)
def test_bad_label_members_are_refused_with_the_shard(
    tmp_path: Path, label: bytes, match: str
) -> None:
    path = _write(tmp_path, _shard_bytes(samples=[("a", b"x", b"1"), ("b", b"y", label)]))
    with pytest.raises(ValueError, match=match) as caught:
        Manifest.scan_tar(path)
    assert repr(path) in str(caught.value) and "'b" in str(caught.value)


def test_inspect_on_a_bad_shard_says_why_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(_shard_bytes())
    _set(data, _headers(bytes(data))[1], 124, b"\x80" + (2**60).to_bytes(11, "big"))
    path = _write(tmp_path, data)
    assert main(["inspect", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torch-balance: error: DATA ") and "shard: expected" in err
    assert path in err
    assert "Traceback" not in err and "MemoryError" not in err


# ---- mutations: whatever is damaged, a right result or a ValueError ---------------------------

_DATA = _shard_bytes()
_PAX = _shard_bytes(tarfile.PAX_FORMAT, [("é" * 60, b"i" * 700, b"3"), ("z", b"", b"4")])
_HOSTILE_SIZES = [
    b"-0000001000\0",
    b"\x80" + (2**60).to_bytes(11, "big"),
    b"\xff" * 12,
    b"77777777777\0",
    b"00000000000\0",
    b"00000001000\0",
    b"00000000001\0",
    b"\0" * 12,
    b"9\0\0\0\0\0\0\0\0\0\0\0",
]


class Mutated(bytes):
    """A damaged shard whose repr says how it was damaged (hypothesis prints it)."""

    recipe = ""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes: {self.recipe}>"


@st.composite
def _mutated(draw: st.DrawFn) -> Mutated:
    data = bytearray(draw(st.sampled_from([_DATA, _PAX])))
    headers = _headers(bytes(data))
    how = draw(st.sampled_from(["byte", "size", "type", "cut", "checksum"]))
    at = draw(st.sampled_from(headers))
    value: object
    if how == "byte":
        at = draw(st.integers(0, len(data) - 1))
        data[at] = value = draw(st.integers(0, 255))
    elif how == "size":
        _set(data, at, 124, value := draw(st.sampled_from(_HOSTILE_SIZES)))
    elif how == "type":
        kinds = [b"x", b"L", b"K", b"g", b"5", b"2", b"S", b"\0", b"Z"]
        _set(data, at, 156, value := draw(st.sampled_from(kinds)))
    elif how == "checksum":
        data[at + 148 : at + 156] = value = draw(st.binary(min_size=8, max_size=8))
    else:
        data = data[: (value := draw(st.integers(0, len(data))))]
    mutated = Mutated(data)
    mutated.recipe = f"{how} at {at}: {value!r}"
    return mutated


@settings(
    max_examples=300,
    deadline=30_000,  # ms: slow parsing fails; a busy machine does not
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_mutated())
def test_a_mutated_shard_reads_right_or_is_refused(data: Mutated) -> None:
    try:
        ours = list(tar_members(io.BytesIO(data), where="m.tar"))
    except ValueError as error:
        assert str(error).startswith("shard: ") and "'m.tar' at byte " in str(error)
        return
    try:
        theirs = _theirs(data)
    except (tarfile.TarError, EOFError):
        pytest.fail("tarfile refuses a shard that this reader accepts")
    assert ours == theirs


# ---- patterns, manifests, mixes, the command line ----------------------------------------------


def test_expand_shards_refuses_a_huge_pattern_by_its_count() -> None:
    from torch_balance.streams import expand_shards

    with pytest.raises(ValueError, match="names 1,000,000,000,000"):
        expand_shards("a-{0..999999999999}.tar")
    with pytest.raises(ValueError, match="names 10,000,000,000"):
        expand_shards("a-{0..99999}-{0..99999}.tar")
    with pytest.raises(ValueError, match="max_shards=3"):
        expand_shards("a-{0..3}.tar", max_shards=3)
    assert len(expand_shards("a-{0..3}.tar", max_shards=4)) == 4


@pytest.mark.parametrize(
    "labels,kind,match",
    [
        ([{"a": 1}], ValueError, r"shards\['s.tar'\]: expected one scalar class label"),
        ([b""], ValueError, "non-empty label"),
        ([0.5], TypeError, "integer or string class labels"),
        ([None], ValueError, "a class label for every sample"),
    ],
)
def test_manifest_labels_follow_get_labels_rule(labels: list, kind: type, match: str) -> None:
    with pytest.raises(kind, match=match):
        Manifest({"s.tar": labels})


def test_manifest_from_file_names_the_path(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"path: .*deep.json.*nested too deep"):
        Manifest.from_file(deep)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"s\xe9.tar": [1]}')
    with pytest.raises(ValueError, match=r"path: expected a JSON index file in UTF-8.*latin.json"):
        Manifest.from_file(latin)
    dict_label = tmp_path / "dict.json"
    dict_label.write_text('{"shards": [{"url": "s.tar", "labels": [{"a": 1}]}]}')
    with pytest.raises(ValueError, match="one scalar class label"):
        Manifest.from_file(dict_label)


def test_balanced_mix_refuses_keys_of_two_kinds() -> None:
    from torch_balance import BalancedMix

    with pytest.raises(TypeError, match="sources_by_class: expected labels of one kind"):
        BalancedMix({0: ["a"], "0": ["b"]})


def test_balanced_mix_plans_from_counts_without_a_label_vector() -> None:
    from torch_balance import BalancedMix

    # 2**62 samples of class 0: the old plan built a label vector of that length
    mix = BalancedMix({0: ["a"], 1: ["b"]}, "under", counts={0: 2**62, 1: 3})
    assert mix.target_counts() == {0: 3, 1: 3}
    assert sorted(mix) == ["a", "a", "a", "b", "b", "b"]


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["inspect", "--batch-size", "-1"], "--batch-size"),
        (["inspect", "--steps", "0"], "--steps"),
        (["bench", "--batch-size", "0"], "--batch-size"),
        (["bench", "--seeds", "x"], "--seeds"),
        (["inspect", "--ratio", "nan"], "--ratio"),
        (["inspect", "--seed", "-3"], "--seed"),
    ],
)
def test_numeric_flags_are_checked_by_argparse(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected" in err and "Traceback" not in err


# ---- the binary manifest ----------------------------------------------------------------------


def _binary(tmp_path: Path) -> Path:
    path = tmp_path / "m.tbm"
    Manifest({"a.tar": [0, 1, 1, 2], "b.tar": [2, 0]}).save(path)
    return path


def _header_at(data: bytes, key: str) -> int:
    """Where the array ``key`` begins, as the header of a binary manifest says."""
    found = re.search(rb'"' + key.encode() + rb'": (\d+)', data)
    assert found is not None, f"no {key} in the header"
    return int(found.group(1))


def _edit(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    """Replace ``old`` by ``new`` in a binary manifest's header, its length field kept right."""

    def edit(data: bytes) -> bytes:
        (length,) = struct.unpack("<Q", data[-16:-8])
        out = data[:-16].replace(old, new)
        return out + struct.pack("<Q", length + len(out) - len(data) + 16) + data[-8:]

    return edit


def _flip_last_row(data: bytes) -> bytes:
    out = bytearray(data)
    out[_header_at(data, "checkpoints_at")] ^= 1  # one class's count, one more or less
    return bytes(out)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda b: b[: len(b) // 2], "no magic at its end"),
        (lambda b: b[:30], "too short for a binary manifest"),
        (lambda b: b"TBMANIF9" + b[8:], "a JSON index file"),  # another magic: not binary
        (_edit(b'"code_bits": 2', b'"code_bits": 8'), "codes of 8 bits for 3"),
        (_edit(b'"code_bits": 2', b'"code_bits": "2"'), "codes of '2' bits"),
        (_edit(b'"row_bits": 2', b'"row_bits": 64'), "counts of 64 bits for 6"),
        (_edit(b'"version": 2', b'"version": 7'), "version 7"),
        (_edit(b'"num_samples": 6', b'"num_samples": 7'), "do not add up"),
        (_edit(b'"rows": 2', b'"rows": 5'), "5 rows of counts for 2 shards"),
        (_edit(b'"stride": ', b'"stride": -'), "sizes that are not counts"),
        (_edit(b'"offsets_at": ', b'"offsets_at": 9'), "offsets past the end"),
        (_edit(b'"checkpoints_at": ', b'"checkpoints_at": 9'), "checkpoints past"),
        (_flip_last_row, "per-class counts that do not add up"),
        (_edit(b'"names": ["a.tar", ', b'"names": ['), "do not match its counts"),
        (_edit(b'"classes": 3, "names"', b'"classes": 4, "names"'), "not lists"),
        (_edit(b'"classes": 3, "names"', b'"classes": "3", "names"'), "are not lists"),
    ],
)
def test_binary_manifest_refuses_damage(
    tmp_path: Path, damage: Callable[[bytes], bytes], match: str
) -> None:
    path = _binary(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=rf"path: expected .*({match})") as info:
        Manifest.from_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_edit(b'"dtype": "uint8"', b'"dtype": "uint16"'), "dtype 'uint16' for 3"),
        (_edit(b'"uint8"', b'"int64"'), "dtype 'int64'"),
        (_edit(b'"num_samples": 6', b'"num_samples": 9'), "past the end|add up"),
        (lambda b: b[:70] + b[71:], "past the end|add up|not JSON|magic"),
    ],
)
def test_version_1_manifest_refuses_damage(
    tmp_path: Path, damage: Callable[[bytes], bytes], match: str
) -> None:
    path = tmp_path / "old.tbm"
    version_1_file(path, {"a.tar": [0, 1, 1, 2], "b.tar": [2, 0]}, [0, 1, 2], 1)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=rf"path: expected .*({match})"):
        Manifest.from_file(path)


def test_binary_manifest_refuses_codes_beyond_its_classes(tmp_path: Path) -> None:
    path = _binary(tmp_path)
    data = bytearray(path.read_bytes())
    data[64] |= 0b11 << 4  # sample 2's code (2 bits each, from bit 0): 3, no such class
    path.write_bytes(bytes(data))
    manifest = Manifest.from_file(path)  # opening reads no codes
    assert manifest.shard_codes(1).tolist() == [2, 0]  # the other shard is fine
    with pytest.raises(
        ValueError,
        match=rf"class codes below its 3 classes, got code 3 in sha"
        rf"rd 0 of '{re.escape(str(path))}'",
    ):
        manifest.shard_codes(0)
    for read in (manifest.shard_labels, lambda: manifest.codes, manifest.to_dict):
        with pytest.raises(ValueError, match="code 3 in shard 0"):
            read()
    with pytest.raises(ValueError, match="format: expected 'json' or 'binary'"):
        manifest.save(tmp_path / "x", format="npz")
    old = tmp_path / "old.tbm"
    version_1_file(old, {"a.tar": [0, 1, 1, 2], "b.tar": [2, 0]}, [0, 1, 2], 1)
    data = bytearray(old.read_bytes())
    data[64 + 2] = 9  # version 1: one byte a code
    old.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"got code 9 in shard 0 of '{re.escape(str(old))}'"):
        Manifest.from_file(old).shard_codes(0)


def test_a_missing_shard_is_named_with_its_fix(tmp_path: Path) -> None:
    missing = tmp_path / "train-7.tar"
    with pytest.raises(FileNotFoundError, match=r"shard '.*train-7.tar': .*expand_shards"):
        list(tar_samples(str(missing)))
