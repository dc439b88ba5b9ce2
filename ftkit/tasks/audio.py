"""Audio clips for the speech-recognition family: where they are (an audio folder with
metadata.csv, a table with a column of paths, predict's folder or list of clips), whether they
read, and their samples (mono, resampled to the feature extractor's rate).

soundfile (libsndfile) reads WAV, FLAC and OGG (and MP3 with libsndfile >= 1.1); scipy's
polyphase filter resamples (`scipy.signal.resample_poly`, as librosa's "polyphase" mode does).
"""

from __future__ import annotations

from collections.abc import Iterator
from math import gcd
from pathlib import Path
from typing import Any

from ftkit.data import AUDIO_SUFFIXES, TABLE_SUFFIXES, TEXT_SUFFIXES, Split, check_readable, iter_records, read_columns
from ftkit.errors import FtkitError, first_line

METADATA = ("metadata.csv", "metadata.jsonl")  # the `audiofolder` convention: file_name + transcription
FILE_COLUMN = "file_name"  # the audiofolder column naming each clip, relative to the folder
INSTALL = "pip install 'ftkit[speech]' (soundfile, jiwer)"


def soundfile() -> Any:
    """The soundfile module, or the install line to get it."""
    try:
        import soundfile as sf
    except ImportError:
        raise FtkitError(f"speech recognition reads audio with soundfile, which is not installed: {INSTALL}") from None
    return sf


def metadata_of(folder: Path) -> Path | None:
    """An audio folder's metadata file (csv first), or None."""
    return next((folder / name for name in METADATA if (folder / name).is_file()), None)


def read_folder(folder: Path, text_column: str, encoding: str) -> Split:
    """An audio folder: its metadata.csv (or .jsonl) names each clip (`file_name`, relative to the
    folder) and its transcription (`text_column`, else `transcription`)."""
    metadata = metadata_of(folder)
    if metadata is None:
        found = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)[:3]
        clips = f" (it holds clips: {', '.join(found)}, ...)" if found else ""
        raise FtkitError(
            f"{folder}: no metadata.csv{clips}; an audio folder lists its clips in metadata.csv with the columns "
            f"{FILE_COLUMN},transcription (the audiofolder convention), or pass a csv/jsonl with an audio column"
        )
    return read_table(metadata, {"audio": FILE_COLUMN, "target": text_column_of(metadata, text_column, encoding)}, encoding)


def text_column_of(metadata: Path, text_column: str, encoding: str) -> str:
    """The transcription column of an audio folder's metadata: `text_column` where it has one,
    else the convention's `transcription`."""
    first = next(iter_records(metadata, encoding), (0, {}))[1]
    return text_column if text_column in first or "transcription" not in first else "transcription"


def read_table(path: Path, columns: dict[str, str | None], encoding: str, fmt: str = "auto") -> Split:
    """A table whose audio column holds paths relative to the table's folder: the paths made
    whole, and every clip checked to read (the first that does not is one line, before training)."""
    split = read_columns(path, columns, encoding, fmt)
    split.columns["audio"] = [locate(value, path.parent, split.source, row) for value, row in zip(split.columns["audio"], split.rows)]
    return split


def locate(value: Any, base: Path, source: str, row: int) -> str:
    """A clip's path (relative ones from `base`), checked to exist and to read as audio."""
    if not isinstance(value, str) or not value.strip():
        raise FtkitError(f"{source}: line/row {row}: the audio column holds {value!r}, not a file path; write the clip's path (relative to the data file)")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    check_clip(path, f"{source}: line/row {row}: ")
    return str(path)


def check_clip(path: Path, where: str = "") -> float:
    """A clip's length in seconds, read from its header; an unreadable one is one line naming it."""
    check_readable(path, AUDIO_SUFFIXES)
    try:
        info = soundfile().info(str(path))
    except (RuntimeError, OSError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise FtkitError(f"{where}{path}: not a readable audio file ({first_line(err)[:160]}); re-export it as WAV or FLAC, or drop it") from None
    if not info.frames or not info.samplerate:
        raise FtkitError(f"{where}{path}: an audio file without samples; drop it or record it again")
    return info.frames / info.samplerate


def duration(audio: Any) -> float:
    """Seconds of a clip: a path (from its header), a Hub dataset's encoded {"bytes", "path"} or
    decoded {"array", "sampling_rate"}."""
    if isinstance(audio, dict) and "array" in audio:
        return len(audio["array"]) / audio["sampling_rate"]
    if isinstance(audio, dict) and audio.get("bytes"):
        info = _read(audio, lambda sf, source: sf.info(source))
        return info.frames / info.samplerate
    return check_clip(Path(_path_of(audio)))


def load(audio: Any, rate: int) -> Any:
    """A clip's samples as mono float32 at `rate` Hz."""
    import numpy as np

    if isinstance(audio, dict) and "array" in audio:
        samples, source_rate = np.asarray(audio["array"], dtype=np.float32), int(audio["sampling_rate"])
    else:
        samples, source_rate = _read(audio, lambda sf, source: sf.read(source, dtype="float32", always_2d=True))
        samples = samples.mean(axis=1)  # channels averaged: Whisper hears one
    return resample(samples, source_rate, rate)


def resample(samples: Any, source_rate: int, rate: int) -> Any:
    """Polyphase resampling from `source_rate` to `rate` (none when they are equal)."""
    import numpy as np

    if source_rate == rate:
        return samples.astype(np.float32)
    from scipy.signal import resample_poly

    common = gcd(source_rate, rate)
    return resample_poly(samples, rate // common, source_rate // common).astype(np.float32)


def _read(audio: Any, read: Any) -> Any:
    """read(soundfile, a path or the encoded bytes) of a clip; a failure is one line naming it."""
    import io

    encoded = isinstance(audio, dict) and audio.get("bytes")
    try:
        return read(soundfile(), io.BytesIO(audio["bytes"]) if encoded else _path_of(audio))
    except (RuntimeError, OSError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise FtkitError(f"{_path_of(audio)}: not a readable audio file ({first_line(err)[:160]}); re-export it as WAV or FLAC") from None


def _path_of(audio: Any) -> str:
    """A path value, or the path of an undecoded Hub audio value ({"path", "bytes"})."""
    return audio["path"] if isinstance(audio, dict) else str(audio)


def clips(source: str | list[str], column: str | None, default_column: str, encoding: str) -> Iterator[dict[str, Any]]:
    """predict's inputs in order, as {"file"}: a folder's clips (sorted by name; its metadata.csv's
    order when it has one), one clip, a .txt list of paths (one a line, relative to the list),
    stdin's lines, or a table's audio column."""
    if isinstance(source, list):
        raise FtkitError("speech recognition transcribes audio, not --text: pass a folder of clips, a clip, or a list file of paths")
    if source == "-":
        yield from ({"file": r["text"].strip()} for _, r in iter_records("-") if r["text"].strip())
        return
    path = Path(source)
    if path.is_dir():
        yield from _folder_clips(path, encoding)
    elif path.suffix.lower() in AUDIO_SUFFIXES:
        yield {"file": source}
    elif path.suffix.lower() in TEXT_SUFFIXES:
        check_readable(path, TEXT_SUFFIXES)
        yield from ({"file": str(path.parent / r["text"].strip())} for _, r in iter_records(path, encoding) if r["text"].strip())
    else:
        check_readable(path, TABLE_SUFFIXES + TEXT_SUFFIXES + AUDIO_SUFFIXES)
        split = read_columns(path, {"audio": column or default_column}, encoding)
        yield from ({"file": str(path.parent / str(v))} for v in split.columns["audio"])


def _folder_clips(folder: Path, encoding: str) -> Iterator[dict[str, Any]]:
    metadata = metadata_of(folder)
    if metadata is not None:
        yield from ({"file": str(folder / str(r[FILE_COLUMN]))} for _, r in iter_records(metadata, encoding) if FILE_COLUMN in r)
        return
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not found:
        raise FtkitError(f"{folder}: no audio clips here ({', '.join(AUDIO_SUFFIXES)}); pass the folder that holds them")
    yield from ({"file": str(p)} for p in found)
