"""Hostile inputs to the frames stage: mixed image sizes, zip bombs, corrupt images, forged archives.

Every test builds its own bad input and checks for one clear ValueError (SourceError or
FrameArchiveError) naming the file, with nothing written and no large allocation first.
"""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image

from densemotion.frames import extract as extract_mod
from densemotion.frames.extract import extract
from densemotion.frames.sources import SourceError
from densemotion.frames.store import FrameArchive, FrameArchiveError, FrameArchiveWriter, encode_jpeg, read_member
from densemotion.params import FramesParams

from conftest import moving_frames

MIB = 2**20


def _jpegs(n: int = 10, h: int = 64, w: int = 96) -> list[bytes]:
    return [encode_jpeg(f, 90) for f in moving_frames(n, h, w)]


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _rotated_jpeg(rgb: np.ndarray, orientation: int = 6) -> bytes:
    """JPEG bytes with an EXIF orientation tag (as phones write them); OpenCV applies it on decode."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds almost nothing (a pixel bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _make_source(tmp_path: Path, kind: str, files: dict[str, bytes]) -> tuple[str, str]:
    """(spec, prefix of the names in errors) of a folder, a zip, or one video of a zip of several."""
    if kind == "folder":
        folder = tmp_path / "clip_frames"
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return str(folder), str(folder)
    path = tmp_path / f"{kind}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        if kind == "zip":
            for name, data in files.items():
                z.writestr(f"clip/{name}", data)
            return str(path), f"{path}"
        for name, data in files.items():
            z.writestr(f"frames/b/frames/{name}", data)
            z.writestr(f"frames/a/frames/{name}", b"another video")
    return f"{path}::frames/b/frames", f"{path}::frames/b/frames"


@pytest.fixture
def no_writing(monkeypatch):
    """Fail the test if extract starts writing an archive: bad sources must be refused first."""

    def refuse(*args, **kwargs):
        raise AssertionError("an archive was started before the source was checked")

    monkeypatch.setattr(extract_mod, "FrameArchiveWriter", refuse)


def _extract(spec: str, dest: Path, **params) -> dict:
    return extract(spec, dest, FramesParams(**params), progress=False)


def _nothing_written(dest: Path) -> bool:
    return not dest.parent.exists() or not list(dest.parent.glob(f"*{dest.name}*"))


# --- 1. mixed image sizes --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "zip", "inner"])
@pytest.mark.parametrize("odd_at", [0, 6])
def test_mixed_image_sizes_are_refused_before_writing(tmp_path, kind, odd_at, no_writing):
    jpegs = _jpegs(10)
    files = {f"f{i:02d}.jpg": data for i, data in enumerate(jpegs)}
    # a stray 16x16 thumbnail sorted first, or a 48x32 PNG in the middle
    odd = encode_jpeg(moving_frames(1, 16, 16)[0], 90) if odd_at == 0 else _png(moving_frames(1, 32, 48)[0])
    odd_name = "a_thumb.jpg" if odd_at == 0 else "f06.png"
    files[odd_name] = odd
    spec, prefix = _make_source(tmp_path, kind, files)
    dest = tmp_path / "out" / "clip.zip"
    if odd_at == 0:  # the first image sets the size: the next one is the first odd file
        pattern = r"f00\.jpg: 96x64 .*16x16"
    else:
        pattern = r"f06\.png: 48x32 .*96x64"
    with pytest.raises(SourceError, match=pattern) as err:
        _extract(spec, dest)
    assert prefix in str(err.value) and "\n" not in str(err.value)
    assert _nothing_written(dest)


def test_exif_rotated_frames_keep_their_shape(tmp_path):
    """JPEGs with an EXIF rotation decode rotated (OpenCV applies it): sized as decoded, not squashed."""
    frames = moving_frames(10, 64, 96)
    files = {f"{i:03d}.jpg": _rotated_jpeg(f) for i, f in enumerate(frames)}
    spec, _ = _make_source(tmp_path, "folder", files)
    meta = _extract(spec, tmp_path / "rot.zip")
    assert (meta["width"], meta["height"]) == (64, 96) and meta["passthrough"]
    with FrameArchive(tmp_path / "rot.zip") as archive:
        assert archive.read(3).shape == (96, 64, 3)
        assert archive.read_bytes(3) == files["003.jpg"]  # stored as they came
    # one rotated frame among upright ones is a size change like any other
    mixed = {f"{i:03d}.jpg": encode_jpeg(f, 90) for i, f in enumerate(frames)}
    mixed["004.jpg"] = _rotated_jpeg(frames[4])
    (tmp_path / "m").mkdir()
    spec, _ = _make_source(tmp_path / "m", "folder", mixed)
    with pytest.raises(SourceError, match=r"004\.jpg: 64x96 .*96x64"):
        _extract(spec, tmp_path / "mixed.zip")


def test_pixel_bombs_are_refused(tmp_path, no_writing):
    for width, height in [(9000, 9000), (30000, 30000)]:  # over our cap; over PIL's own bomb limit too
        folder = tmp_path / f"px{width}"
        folder.mkdir()
        (folder / "0001.png").write_bytes(_png_header(width, height))
        with pytest.raises(SourceError, match=r"0001\.png: .*pixels"):
            _extract(str(folder), tmp_path / "out.zip")


def test_video_sources_are_unaffected(make_video, tmp_path):
    meta = _extract(str(make_video(n=10)), tmp_path / "v.zip")
    assert meta["frame_count"] == 10 and not meta["passthrough"]


# --- 2. zip bombs ----------------------------------------------------------------------------


def _bomb_zip(path: Path, member_bytes: int, name: str = "clip/00003.jpg") -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for i, data in enumerate(_jpegs(8)):
            if f"clip/{i:05d}.jpg" != name:
                z.writestr(f"clip/{i:05d}.jpg", data)
        z.writestr(name, b"\xff\xd8\xff" + bytes(member_bytes - 3))  # compresses ~1000:1
    return path


def test_zip_member_over_the_size_cap_is_not_inflated(tmp_path, no_writing):
    bomb = _bomb_zip(tmp_path / "bomb.zip", 80 * MIB)
    assert bomb.stat().st_size < MIB
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match=r"bomb\.zip/clip/00003\.jpg: .*83886080 bytes.*cap"):
            _extract(str(bomb), tmp_path / "out.zip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB  # refused from the declared size, not after inflating 80 MiB


def test_zip_member_inflating_too_much_is_refused(tmp_path, no_writing):
    bomb = _bomb_zip(tmp_path / "ratio.zip", 4 * MIB)  # under the size cap, but ~1000:1
    with pytest.raises(SourceError, match=r"ratio\.zip/clip/00003\.jpg: .*4194304 bytes from \d+ .*zip bomb"):
        _extract(str(bomb), tmp_path / "out.zip")


def test_zip_members_sharing_their_data_are_refused(tmp_path, no_writing):
    """The overlapping-entries bomb: many directory entries pointing at the same compressed bytes."""
    jpeg = _jpegs(1)[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("clip/00000.jpg", jpeg)
    data = buf.getvalue()
    cd = data.index(b"PK\x01\x02")
    end = data.index(b"PK\x05\x06")
    entry = data[cd:end]
    copies = [entry] * 50  # 50 frames from one JPEG's bytes: 50 times the inflating for the same zip size
    local = data[:cd]
    eocd = bytearray(data[end:])
    struct.pack_into("<HHII", eocd, 8, 50, 50, len(b"".join(copies)), len(local))
    path = tmp_path / "overlap.zip"
    path.write_bytes(local + b"".join(copies) + bytes(eocd))
    with pytest.raises(SourceError, match=r"overlap\.zip: .*overlap"):
        _extract(str(path), tmp_path / "out.zip")


def _set_cd_field(path: Path, member: str, offset: int, fmt: str, value: int) -> None:
    """Patch one field of ``member``'s central-directory entry (what ZipFile trusts)."""
    data = bytearray(path.read_bytes())
    pos = 0
    while True:
        pos = data.index(b"PK\x01\x02", pos)
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + name_len] == member.encode():
            break
        pos += 4
    struct.pack_into(fmt, data, pos + offset, value)
    path.write_bytes(bytes(data))


def test_zip_member_lying_about_its_size(tmp_path, no_writing):
    """A member declaring 1 KiB that inflates to 80 MiB is cut at the cap, never read whole."""
    bomb = _bomb_zip(tmp_path / "liar.zip", 80 * MIB)
    _set_cd_field(bomb, "clip/00003.jpg", 24, "<I", 1024)  # uncompressed size
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match=r"liar\.zip/clip/00003\.jpg"):
            _extract(str(bomb), tmp_path / "out.zip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB


def test_member_read_is_bounded_whatever_its_header_says():
    """read_member inflates at most cap + 1 bytes, even from a reader that ignores the declared size."""
    info = zipfile.ZipInfo("clip/0001.jpg")
    info.file_size = info.compress_size = 10  # what the directory claims
    liar = SimpleNamespace(open=lambda i: io.BytesIO(b"x" * 1000))
    with pytest.raises(SourceError, match=r"clip/0001\.jpg: inflates to more than 50 bytes"):
        read_member(liar, info, "clip/0001.jpg", 50, SourceError)


def test_cli_prints_one_line_for_mixed_sizes(tmp_path, sample_params, capsys):
    from densemotion.cli import frames as frames_cli

    from conftest import write_params

    files = {f"f{i:02d}.jpg": data for i, data in enumerate(_jpegs(10))}
    files["a_thumb.jpg"] = encode_jpeg(moving_frames(1, 16, 16)[0], 90)
    spec, _ = _make_source(tmp_path, "folder", files)
    params = str(write_params(tmp_path / "params.yaml", sample_params))
    assert frames_cli.main([spec, str(tmp_path / "clip.zip"), "--params", params]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "f00.jpg: 96x64" in err and "16x16" in err and "Traceback" not in err
    assert not (tmp_path / "clip.zip").exists()


@pytest.mark.parametrize("damage", ["deflate", "encrypted"])
def test_unreadable_zip_member_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for i, data in enumerate(_jpegs(10)):
            z.writestr(f"clip/{i:05d}.jpg", data)
    if damage == "encrypted":  # flag bit 0: ZipFile asks for a password (RuntimeError)
        _set_cd_field(path, "clip/00004.jpg", 8, "<H", 1)
    else:  # garbage in the middle of the compressed stream (zlib.error)
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("clip/00004.jpg")
        data = bytearray(path.read_bytes())
        start = info.header_offset + 30 + len(info.filename)
        data[start : start + info.compress_size] = bytes([0xFF]) * info.compress_size
        path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"damaged\.zip/clip/00004\.jpg: "):
        _extract(str(path), tmp_path / "out.zip")
    assert _nothing_written(tmp_path / "out.zip")


def test_oversized_file_in_a_folder_is_not_read(tmp_path, no_writing):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, data in enumerate(_jpegs(8)):
        (folder / f"{i:04d}.jpg").write_bytes(data)
    with open(folder / "0005.jpg", "wb") as f:  # sparse: 80 MiB of zeros costs no disk
        f.truncate(80 * MIB)
    with pytest.raises(SourceError, match=r"0005\.jpg: .*83886080 bytes.*cap"):
        _extract(str(folder), tmp_path / "out.zip")


# --- 2b. our own archives, read back as untrusted --------------------------------------------


def _archive(path: Path, n: int = 4, meta: dict | None = None) -> Path:
    writer = FrameArchiveWriter(path)
    for f in moving_frames(n, 32, 48):
        writer.add(encode_jpeg(f, 90))
    writer.close(meta or {"video": "clip", "width": 48, "height": 32, "source_indices": list(range(n))})
    return path


def _rewrite(src: Path, dest: Path, replace: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    """A copy of archive ``src`` with some members' bytes replaced (same names, same order)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", compression=compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info.filename)))
    return dest


def test_valid_archive_still_reads(tmp_path):
    with FrameArchive(_archive(tmp_path / "ok.zip")) as a:
        assert len(a) == 4 and a.size == (32, 48) and a.read_range(0, 4).shape == (4, 32, 48, 3)


def _meta(**changes) -> bytes:
    meta = {"schema_version": 1, "frame_count": 4, "width": 48, "height": 32, "source_indices": [0, 1, 2, 3]}
    meta.update(changes)
    return json.dumps({k: v for k, v in meta.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "meta, why",
    [
        (b'{"schema_version": 1, "frame_co', "unreadable meta.json"),
        (b"\xff\xfe not utf-8", "unreadable meta.json"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "unreadable meta.json"),  # nesting past Python's recursion limit
        (_meta(frame_count=...), "frame_count"),
        (_meta(frame_count="4"), "frame_count"),
        (_meta(frame_count=True), "frame_count"),
        (_meta(frame_count=-1), "frame_count"),
        (_meta(width=...), "width"),
        (_meta(width="wide"), "width"),
        (_meta(height=0), "height"),
        (_meta(width=10**6, height=10**6), "pixels"),
        (_meta(source_indices=...), "source_indices"),
        (_meta(source_indices={"0": 0}), "source_indices"),
        (_meta(source_indices=[0, 1]), "source_indices"),
        (_meta(source_indices=[0, 1, "2", 3]), "source_indices"),
        (_meta(video=["clip"]), "video"),
    ],
)
def test_forged_meta_is_one_clear_error(tmp_path, meta, why):
    path = _rewrite(_archive(tmp_path / "v.zip"), tmp_path / "forged.zip", {"meta.json": meta})
    with pytest.raises(FrameArchiveError, match=rf"forged\.zip: .*{why}"):
        FrameArchive(path)


def test_oversized_meta_is_not_read(tmp_path):
    """Valid JSON padded to 40 MiB (a few KiB deflated): refused from its declared size."""
    meta = b" " * (40 * MIB) + _meta()
    path = _rewrite(_archive(tmp_path / "v.zip"), tmp_path / "fat.zip", {"meta.json": meta}, zipfile.ZIP_DEFLATED)
    with pytest.raises(FrameArchiveError, match=r"fat\.zip: meta\.json.*41943\d\d\d bytes.*cap"):
        FrameArchive(path)


def test_oversized_or_bombed_frame_member(tmp_path):
    bomb = b"\xff\xd8\xff" + bytes(80 * MIB)
    src = _archive(tmp_path / "v.zip")
    path = _rewrite(src, tmp_path / "bomb.zip", {"frames/000002.jpg": bomb}, zipfile.ZIP_DEFLATED)
    tracemalloc.start()
    try:
        with pytest.raises(FrameArchiveError, match=r"bomb\.zip: frames/000002\.jpg.*83886083 bytes.*cap"):
            FrameArchive(path).read_bytes(2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB


def test_archive_frames_misnamed_or_of_another_size(tmp_path):
    src = _archive(tmp_path / "v.zip")
    # four frames, but not frames/000000.jpg ... frames/000003.jpg
    renamed = tmp_path / "renamed.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(renamed, "w") as zout:
        for info in zin.infolist():
            name = info.filename.replace("000003", "x")
            zout.writestr(name, zin.read(info.filename))
    with pytest.raises(FrameArchiveError, match=r"renamed\.zip: .*frames/000003\.jpg"):
        FrameArchive(renamed)
    # a frame of another size than meta says: refused before decoding, not stacked wrongly later
    big = encode_jpeg(moving_frames(1, 64, 96)[0], 90)
    odd = _rewrite(src, tmp_path / "odd.zip", {"frames/000001.jpg": big})
    with FrameArchive(odd) as a:
        a.read(0)
        with pytest.raises(FrameArchiveError, match=r"odd\.zip.*frame 1.*96x64.*48x32"):
            a.read_range(0, 4)
    bomb = _rewrite(src, tmp_path / "px.zip", {"frames/000001.jpg": _png_header(30000, 30000)})
    with FrameArchive(bomb) as a, pytest.raises(FrameArchiveError, match=r"px\.zip.*frame 1"):
        a.read(1)


# --- 3. unreadable images --------------------------------------------------------------------


def _damaged(kind: str, jpeg: bytes, png: bytes) -> tuple[str, bytes]:
    return {
        "garbage": ("f04.jpg", b"this is not an image at all " * 20),
        "empty": ("f04.jpg", b""),
        "truncated-jpeg": ("f04.jpg", jpeg[: len(jpeg) // 2]),
        "truncated-png": ("f04.png", png[: len(png) // 2]),
        "header-only-jpeg": ("f04.jpg", jpeg[:200]),
    }[kind]


@pytest.mark.parametrize("source", ["folder", "zip", "inner"])
@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated-jpeg", "truncated-png", "header-only-jpeg"])
def test_unreadable_image_is_one_clear_error(tmp_path, source, kind):
    jpegs = _jpegs(10)
    files = {f"f{i:02d}.jpg": data for i, data in enumerate(jpegs) if i != 4}
    name, data = _damaged(kind, jpegs[4], _png(moving_frames(1, 64, 96)[0]))
    files[name] = data
    spec, prefix = _make_source(tmp_path, source, files)
    dest = tmp_path / "out" / "clip.zip"
    with pytest.raises(SourceError, match=rf"/{name}: .*image") as err:
        _extract(spec, dest)
    assert str(err.value).startswith(f"{prefix}/") and "\n" not in str(err.value)
    assert _nothing_written(dest)


# --- 6. videos that decode short of what their container states --------------------------------


def _ts(tmp_path: Path, n: int = 48, name: str = "clip.ts") -> Path:
    """A real n-frame H.264 MPEG-TS at 24 fps, from the project's own encoder."""
    from densemotion.video import encode_video

    path = tmp_path / name
    encode_video(path, moving_frames(n, 64, 96), 24.0, muxer="mpegts")
    return path


def test_truncated_video_warns_naming_the_file_and_the_counts(tmp_path, capsys):
    """A TS cut at half its bytes decodes cleanly but short: never silently (exit 0, a short archive)."""
    whole = _ts(tmp_path)
    cut = tmp_path / "cut.ts"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    meta = _extract(str(cut), tmp_path / "cut.zip")
    assert meta["frame_count"] == 18  # the frames that are there are kept
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "WARNING" in line]
    assert len(lines) == 1, err
    assert str(cut) in lines[0] and "decoded 18 frames" in lines[0]
    assert "0.875 s" in lines[0] and "21 frames" in lines[0]  # the duration its timestamps span, at 24 fps


def test_damaged_middle_warns(tmp_path, capsys):
    """Garbage inside the stream: the decoder conceals it by dropping frames; the shortfall is named."""
    path = _ts(tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    meta = _extract(str(path), tmp_path / "d.zip")
    err = capsys.readouterr().err
    assert meta["frame_count"] < 43
    assert f"WARNING: {path}: decoded {meta['frame_count']} frames" in err and "48 frames" in err


@pytest.mark.parametrize("kind", ["ts", "mp4"])
def test_intact_video_gives_no_warning(tmp_path, make_video, capsys, kind):
    path = _ts(tmp_path) if kind == "ts" else make_video(n=48)
    meta = _extract(str(path), tmp_path / "ok.zip")
    assert meta["frame_count"] == 48
    assert "WARNING" not in capsys.readouterr().err


def test_shortfall_is_judged_against_the_stated_count_or_duration():
    from densemotion.video import shortfall

    assert shortfall(48, frames=48, duration=2.0, fps=24.0) is None
    assert shortfall(44, frames=48, duration=None, fps=24.0) is None  # within 10%
    assert "states 48 frames" in (shortfall(40, frames=48, duration=None, fps=24.0) or "")
    assert "1.000 s" in (shortfall(20, frames=None, duration=1.0, fps=24.0) or "")
    assert shortfall(23, frames=None, duration=1.0, fps=24.0) is None
    assert shortfall(3, frames=4, duration=None, fps=24.0) is None  # one frame short of a tiny video: rounding
    for unknown in [dict(frames=None, duration=None, fps=24.0), dict(frames=None, duration=1.0, fps=0.0)]:
        assert shortfall(1, **unknown) is None  # nothing stated: nothing to compare
