"""Mono PCM16 WAV files in and out (stdlib ``wave``): written atomically, or streamed in place.

:func:`write_wav` writes a whole file atomically. :class:`WavStreamWriter` writes one as the
samples come (the recordings of a call in progress): the header is valid from the start and its
sizes are brought up to date after every batch of samples, so a process killed mid-call leaves
a readable file; :func:`recover_wav` fixes the sizes of a file left by a process killed between
a batch and its header update.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from hydralab.audio.pcm import check_pcm16

__all__ = [
    "WAV_HEADER_BYTES",
    "WavRecovery",
    "WavStreamWriter",
    "read_wav",
    "recover_wav",
    "wav_bytes",
    "wav_header",
    "write_wav",
]

WAV_HEADER_BYTES: Final = 44
"""Size of the canonical PCM header (``RIFF``/``WAVE``, a 16-byte ``fmt `` chunk, ``data``)."""
_FILE_MODE: Final = 0o644
_RIFF_MAX: Final = 0xFFFFFFFF


def wav_bytes(pcm: npt.NDArray[np.int16], *, sample_rate_hz: int) -> bytes:
    """Encode mono PCM16 as a complete WAV file in memory.

    Args:
        pcm: mono int16 samples.
        sample_rate_hz: sample rate written to the header.

    Returns:
        The RIFF/WAVE bytes.
    """
    pcm = check_pcm16(pcm, "write_wav")
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate_hz))
        w.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return buf.getvalue()


def wav_header(n_frames: int, *, sample_rate_hz: int) -> bytes:
    """The 44-byte header of a mono PCM16 file of ``n_frames`` samples (the bytes ``wave``
    writes, so a file of this header plus the samples equals :func:`wav_bytes`)."""
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    data = 2 * int(n_frames)
    if n_frames < 0 or data + WAV_HEADER_BYTES - 8 > _RIFF_MAX:
        raise ValueError(f"{n_frames} frames do not fit a WAV file")
    rate = int(sample_rate_hz)
    return b"RIFF" + struct.pack(
        "<L4s4sLHHLLHH4sL",
        36 + data,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        2 * rate,
        2,
        16,
        b"data",
        data,
    )


def write_wav(
    path: str | os.PathLike[str], pcm: npt.NDArray[np.int16], *, sample_rate_hz: int
) -> Path:
    """Write mono PCM16 to ``path`` atomically (temporary file, then ``os.replace``).

    A reader never sees a half-written file: it sees the old file or the new one.

    Args:
        path: destination file; its directory must exist.
        pcm: mono int16 samples.
        sample_rate_hz: sample rate written to the header.

    Returns:
        The destination path.
    """
    dest = Path(path)
    data = wav_bytes(pcm, sample_rate_hz=sample_rate_hz)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


class WavStreamWriter:
    """A mono PCM16 WAV file written in place while its samples come.

    The file is created (truncated if it exists) with a header for zero samples. Samples are
    written at any index (:meth:`write_at`; earlier ones may be rewritten), the header's sizes
    follow with :meth:`commit`, and :meth:`close` commits, fsyncs and closes. Between a
    :meth:`write_at` and the next :meth:`commit` the header may count fewer samples than the
    file holds; :func:`recover_wav` repairs such a file after a crash.

    Args:
        path: the file (its directory must exist). Created with mode ``0o644`` less the umask.
        sample_rate_hz: rate written to the header.
    """

    def __init__(self, path: str | os.PathLike[str], *, sample_rate_hz: int) -> None:
        self.path = Path(path)
        self.sample_rate_hz = int(sample_rate_hz)
        header = wav_header(0, sample_rate_hz=self.sample_rate_hz)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        self._f: io.FileIO | None = io.FileIO(fd, "r+", closefd=True)
        self._f.write(header)
        self.frames = 0
        """Samples in the file (the data chunk's length once committed)."""
        self._committed = 0

    @property
    def closed(self) -> bool:
        return self._f is None

    def _file(self) -> io.FileIO:
        if self._f is None:
            raise ValueError(f"{self.path}: the stream is closed")
        return self._f

    def write_at(self, index: int, pcm: npt.NDArray[np.int16]) -> None:
        """Write samples from sample ``index`` on (over what is there; a gap stays zeros)."""
        pcm = check_pcm16(pcm, "WavStreamWriter")
        if index < 0:
            raise ValueError(f"sample index must be >= 0, got {index}")
        if pcm.shape[0] == 0:
            return
        f = self._file()
        f.seek(WAV_HEADER_BYTES + 2 * int(index))
        data = memoryview(pcm.astype("<i2", copy=False).tobytes())
        while data:  # a raw file may write less than asked
            n = f.write(data)
            data = data[n or 0 :]
        self.frames = max(self.frames, int(index) + pcm.shape[0])

    def truncate(self, n_frames: int) -> None:
        """Drop the samples from ``n_frames`` on."""
        if 0 <= n_frames < self.frames:
            self._file().truncate(WAV_HEADER_BYTES + 2 * int(n_frames))
            self.frames = int(n_frames)

    def commit(self) -> None:
        """Bring the header's sizes up to date with the samples written."""
        if self.frames == self._committed:
            return
        f = self._file()
        f.seek(0)
        f.write(wav_header(self.frames, sample_rate_hz=self.sample_rate_hz))
        self._committed = self.frames

    def close(self, *, fsync: bool = True) -> None:
        """Commit, fsync (unless told not to) and close; closing twice is a no-op."""
        if self._f is None:
            return
        try:
            self.commit()
            if fsync:
                os.fsync(self._f.fileno())
        finally:
            f, self._f = self._f, None
            f.close()


@dataclass(frozen=True)
class WavRecovery:
    """What :func:`recover_wav` found and did."""

    path: Path
    frames: int
    """Sample frames in the repaired file."""
    sample_rate_hz: int
    repaired: bool
    """False when the file was already consistent (nothing was written)."""
    dropped_bytes: int = 0
    """Bytes of a torn last frame cut off the end."""


def recover_wav(path: str | os.PathLike[str], *, dry_run: bool = False) -> WavRecovery:
    """Make a WAV file left by a killed writer valid again, keeping every whole sample frame.

    The file's ``data`` chunk is taken to run to the end of the file (as with the streamed
    recordings, and with every file ``wave`` writes): its size and the RIFF size are set to
    what is on disk, a torn last frame is cut off. A consistent file is left untouched. Works
    on any PCM ``fmt`` (channels, sample width); other chunks before ``data`` are kept.

    Args:
        path: the file, repaired in place.
        dry_run: only say what a repair would do (the file is opened read-only).

    Returns:
        The :class:`WavRecovery` (frames kept, rate, whether anything changed — or, with
        ``dry_run``, would change).

    Raises:
        ValueError: no usable RIFF/WAVE header with a ``fmt `` chunk before ``data`` (the
            writer died before its header was written: the sample rate is unknown).
    """
    p = Path(path)
    with open(p, "rb" if dry_run else "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"{p}: not a RIFF/WAVE file (or its header was never written)")
        pos, block, rate = 12, 0, 0
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                raise ValueError(f"{p}: no data chunk (the header was never completed)")
            cid, csize = chunk[:4], struct.unpack("<L", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(16)
                if len(fmt) < 16:
                    raise ValueError(f"{p}: torn fmt chunk")
                _tag, _channels, rate, _byte_rate, block, _bits = struct.unpack("<HHLLHH", fmt)
            elif cid == b"data":
                break
            pos += 8 + csize + (csize & 1)
        if block <= 0 or rate <= 0:
            raise ValueError(f"{p}: no usable fmt chunk before the data chunk")
        data_off = pos + 8
        frames = max(0, size - data_off) // block
        end = data_off + frames * block
        data_size = frames * block
        if end - 8 > _RIFF_MAX:
            raise ValueError(f"{p}: {end} bytes do not fit a WAV file")
        dropped = size - end
        f.seek(4)
        riff_now = struct.unpack("<L", f.read(4))[0]
        repaired = dropped > 0 or riff_now != end - 8 or csize != data_size
        if repaired and not dry_run:
            f.truncate(end)
            f.seek(4)
            f.write(struct.pack("<L", end - 8))
            f.seek(pos + 4)
            f.write(struct.pack("<L", data_size))
            f.flush()
            os.fsync(f.fileno())
    return WavRecovery(p, frames, rate, repaired, dropped)


def read_wav(path: str | os.PathLike[str]) -> tuple[npt.NDArray[np.int16], int]:
    """Read a mono PCM16 WAV file.

    Args:
        path: the file.

    Returns:
        ``(samples, sample_rate_hz)`` with samples as a new int16 array.

    Raises:
        ValueError: the file is not mono 16-bit PCM.
    """
    with wave.open(os.fspath(path), "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        if channels != 1 or width != 2:
            raise ValueError(
                f"{path}: expected mono 16-bit PCM, got {channels} channel(s) of {8 * width} bit"
            )
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").astype(np.int16), rate
