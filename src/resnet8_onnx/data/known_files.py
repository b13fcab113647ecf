"""Every official file this tool knows, declared once as data, and the one rule for trusting it.

The table holds the two CIFAR-10 archives, every file inside them, the MLPerf Tiny model and
its perf-subset indices, with the checksums (and sizes, URLs) published for them. Python member
checksums are torchvision's ``cifar.py``; the binary ones appear in several independent public
checksum lists; the MLPerf Tiny files are pinned to one commit of ``mlcommons/tiny``.

**Is this the official file?** :func:`identify` answers for every file the same way. A file
under an official name is that official file when its bytes have the entry's checksum, and
otherwise *differs* (a test batch holding training images is not the test batch). A file under
any other name is recognised by content: a renamed copy of the perf indices is still the perf
indices; anything else is *unknown*.

**What a differing file may do.** It is never passed off as the official one. It is used as
what it is only where the result says so: the CIFAR-10 files, the archives and the indices are
loaded once their structure checks pass, and the data set is then marked unofficial
(``source.official`` false, a warning naming the file and both checksums, never called the
official test set or the perf subset). Where nothing downstream could say so — a file the tool
supplies by name because the user named none, i.e. the model ``run`` uses without ``--model``
— it is refused (:func:`require_official`, exit 4); passing it explicitly uses it as the user's
own. A differing copy in the tool's own download cache is a broken download: it is downloaded
again when downloads are allowed, and refused otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from resnet8_onnx.data.format import (
    BINARY_DIR,
    BINARY_TAR,
    FILE_BATCH_SIZE,
    MODEL,
    PERF_INDICES,
    PYTHON_DIR,
    PYTHON_TAR,
    ROW_BYTES,
)
from resnet8_onnx.support.errors import InvalidInputError
from resnet8_onnx.support.fsutil import file_digest

_MLPERF_TINY = (
    "https://raw.githubusercontent.com/mlcommons/tiny/1afd2c9820f795965a6134facd0b4dfae41ef23f/"
    "benchmark/training/image_classification/"
)
_CIFAR_SITE = "https://www.cs.toronto.edu/~kriz/"
_BINARY_FILE_BATCH_BYTES = FILE_BATCH_SIZE * ROW_BYTES


@dataclass(frozen=True)
class KnownFile:
    """An official file: its name, where it is published and how to recognise it.

    ``url`` is None for an archive member (it comes with its archive, ``archive``); ``size``
    is given where it was measured on the official file.
    """

    name: str
    url: str | None
    sha256: str | None
    md5: str | None
    description: str
    kind: str = "data"  # "archive" | "member" | "model" | "indices"
    archive: str | None = None  # for a member: the archive that holds it
    size: int | None = None

    def digest_of(self, path: str | os.PathLike[str]) -> tuple[str, str] | None:
        """``(algorithm, hex digest)`` of ``path`` for the strongest checksum we know, or None."""
        algorithm = self.algorithm
        return None if algorithm is None else (algorithm, file_digest(path, algorithm))

    @property
    def algorithm(self) -> str | None:
        """The strongest algorithm this entry has a checksum for."""
        return "sha256" if self.sha256 else "md5" if self.md5 else None

    def expected(self, algorithm: str) -> str | None:
        """The official digest for ``algorithm`` ("sha256" or "md5")."""
        return self.sha256 if algorithm == "sha256" else self.md5


def _member(name: str, md5: str, archive: str, size: int | None = None) -> KnownFile:
    top = BINARY_DIR if archive == BINARY_TAR else PYTHON_DIR
    return KnownFile(name=name, url=None, sha256=None, md5=md5, kind="member", archive=archive,
                     description=f"CIFAR-10 {top}/{name}", size=size)


KNOWN_FILES: dict[str, KnownFile] = {
    f.name: f
    for f in (
        KnownFile(
            name=MODEL,
            url=_MLPERF_TINY + "trained_models/pretrainedResnet.h5",
            sha256="5f938a8eea605438cc7360aa13c987bc6d7bd0c8d931b2917361ae7ae4eeda2f",
            md5=None,
            description="MLPerf Tiny ResNet8 Keras model (CIFAR-10)",
            kind="model",
            size=1_116_712,
        ),
        KnownFile(
            name=PERF_INDICES,
            url=_MLPERF_TINY + "perf_samples_idxs.npy",
            sha256="3bd4a88eeb4c50fad652d0f24c8af13bc9219ba2878aea47c6536bfbeb43024d",
            md5=None,
            description="MLPerf Tiny 200-image performance subset (indices into the test set)",
            kind="indices",
            size=1_728,
        ),
        KnownFile(
            name=BINARY_TAR,
            url=_CIFAR_SITE + BINARY_TAR,
            sha256=None,
            md5="c32a1d4ab5d03f1284b67883e8d87530",
            description="CIFAR-10, official binary distribution",
            kind="archive",
        ),
        KnownFile(
            name=PYTHON_TAR,
            url=_CIFAR_SITE + PYTHON_TAR,
            sha256=None,
            md5="c58f30108f718f92721af3b95e74349a",
            description="CIFAR-10, official Python (pickle) distribution",
            kind="archive",
        ),
        *(
            _member(name, md5, BINARY_TAR, _BINARY_FILE_BATCH_BYTES)
            for name, md5 in (
                ("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
                ("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
                ("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
                ("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
                ("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
                ("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d"),
            )
        ),
        *(
            _member(name, md5, PYTHON_TAR)
            for name, md5 in (
                ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                ("test_batch", "40351d587109b95175f43aff81a1287e"),
                ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
            )
        ),
    )
}


@dataclass(frozen=True)
class Identity:
    """What :func:`identify` found: the file's digest and which official file, if any, it is."""

    name: str  # the name the file was found under
    algorithm: str | None  # None: no checksum is known for this name
    digest: str | None
    known: KnownFile | None  # the table entry for ``name``, if it is an official name
    match: KnownFile | None  # the entry whose checksum the bytes have (any name)

    @property
    def official(self) -> bool:
        """The bytes are an official file's."""
        return self.match is not None

    @property
    def differs(self) -> bool:
        """An official name with other bytes: never to be taken for the official file."""
        return self.known is not None and self.match is None and self.digest is not None

    @property
    def expected(self) -> str | None:
        """The official digest for this name (what a differing file should have had)."""
        if self.known is None or self.algorithm is None:
            return None
        return self.known.expected(self.algorithm)


def identify(name: str, *, md5: str | None = None, sha256: str | None = None) -> Identity:
    """Which official file bytes with these digests are, given the ``name`` they came under.

    Pass the digest(s) the caller already has (a parser's md5 of the bytes it parsed, a
    file's sha256); the table is read at call time, so tests may register their own entries.
    """
    known = KNOWN_FILES.get(name)
    digests = {"sha256": sha256, "md5": md5}
    algorithm = known.algorithm if known is not None else None
    if algorithm is None:  # not an official name: whichever digest was given
        algorithm = "sha256" if sha256 else "md5" if md5 else None
    digest = digests.get(algorithm) if algorithm else None
    match = None
    if known is not None:  # an official name is that file or differs, never another one
        if digest is not None and algorithm and known.expected(algorithm) == digest:
            match = known
    else:  # any other name: recognised by content
        match = next((entry for entry in KNOWN_FILES.values()
                      if any(value is not None and entry.expected(alg) == value
                             for alg, value in digests.items())), None)
    return Identity(name, algorithm, digest, known, match)


def identify_file(path: str | os.PathLike[str], name: str | None = None) -> Identity:
    """:func:`identify` for a file on disk, hashed with its entry's algorithm (sha256 if none)."""
    name = name if name is not None else os.path.basename(os.fspath(path))
    known = KNOWN_FILES.get(name)
    algorithm = (known.algorithm if known is not None else None) or "sha256"
    return identify(name, **{algorithm: file_digest(path, algorithm)})


def require_official(path: str | os.PathLike[str], known: KnownFile) -> str:
    """The check of a file the tool supplies by name: a one-line record if it is the official
    file, :class:`InvalidInputError` (exit 4) if it differs (see the module docstring)."""
    algorithm = known.algorithm
    if algorithm is None:
        return f"{os.path.basename(os.fspath(path))}: no official checksum known"
    digest = file_digest(path, algorithm)
    expected = known.expected(algorithm)
    if digest != expected:
        raise InvalidInputError(
            f"{path}: {algorithm} {digest} does not match the official {known.name} ({expected})"
        )
    return f"{os.path.basename(os.fspath(path))}: {algorithm} {digest} (official)"


def is_official_perf_indices(sha256: str | None) -> bool:
    """Whether a file with this sha256 is MLPerf Tiny's ``perf_samples_idxs.npy``: only that
    file's selection may be called the perf subset, whatever another file is named."""
    return sha256 is not None and identify(PERF_INDICES, sha256=sha256).official
