"""Mono PCM16 WAV files in and out (stdlib ``wave``), written atomically."""

from __future__ import annotations

import io
import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hydralab.audio.pcm import check_pcm16

__all__ = ["read_wav", "wav_bytes", "write_wav"]


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
