"""Fetching a benchmark's data into the layout its loader reads: verified, atomic, resumable, once per node.

:func:`ensure_data` is what ``hinterval data download`` and ``--download`` call. For each file:

1. a file already at its final place is used if its MD5 sum is the official one (so a file copied
   in by hand on a machine without internet is verified and used), and refused otherwise (it is
   never overwritten);
2. otherwise it is downloaded to ``<name>.part`` next to it; an existing ``.part`` (an interrupted
   download) is resumed with an HTTP range request, or restarted if the server does not resume;
3. a download shorter than the official size is an error that keeps the ``.part`` to resume; a
   wrong MD5 sum deletes it; only a verified file is renamed to its final name.

Archives (CIFAR, TinyImageNet) are unpacked into a temporary folder in the data directory and
their top folder renamed into place in one step, so the loader's folder is complete or absent,
never half there; an archive downloaded by this run is then deleted (one that was there is kept). A file lock per data set and directory makes
concurrent processes (trials on one node) fetch it once: the others wait, say so, and find it.

MD5 sums and unpacking are torchvision's (``calculate_md5``, ``extract_archive``); the download
itself is ours, because torchvision's writes straight to the final name, cannot resume and always
shows a progress bar.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional
from urllib.parse import urlparse

from hinterval.data.common import DATA_DIR_ENV, default_data_dir
from hinterval.data.sources import DataSource, RemoteFile, dataset_of, source
from hinterval.errors import DataError, DownloadError, UserError
from hinterval.files import check_writable_dir, resolve_path, waiting_lock

CHUNK = 1 << 20
#: seconds without any byte from the server before a download counts as cut off
TIMEOUT_S = 60
USER_AGENT = "hinterval (pytorch/vision utils)"


def locate(key: str, data_dir: Optional[str]) -> Path:
    """Where the loader finds data set ``key`` from ``data_dir`` (cheap: file names only).

    Raises:
        DataError: the loader would not find it (the message says what is missing).
    """
    if key in ("mnist", "fashion-mnist"):
        from hinterval.data.idx import idx_files

        return idx_files(data_dir, "mnist" if key == "mnist" else "fashion")[0].parent
    if key in ("cifar10", "cifar100"):
        from hinterval.data.cifar import find_root

        return find_root(data_dir, 10 if key == "cifar10" else 100)
    from hinterval.data.tinyimagenet import find_root as find_tin

    return find_tin(data_dir)


def target_dir(data_dir: Optional[str]) -> Path:
    """The directory data is fetched into (created if missing), or a :class:`UserError`."""
    given = default_data_dir(data_dir)
    if given is None:
        raise UserError(f"no data directory: pass --data-dir DIR (or set ${DATA_DIR_ENV}) to say where the data goes")
    path = resolve_path(given, "--data-dir")
    check_writable_dir(path, "--data-dir")
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_data(name: str, data_dir: Optional[str], *, progress: bool = True) -> Optional[Path]:
    """Make the data of benchmark (or data set) ``name`` readable from ``data_dir``, fetching it if missing.

    Returns the folder the loader reads, or ``None`` for embedded data (the digits benchmarks).

    Raises:
        UserError: no data directory, or something in the way that is not ours to replace.
        DownloadError: the download failed (network, checksum); running again resumes or restarts.
    """
    key = dataset_of(name)
    if key is None:
        return None
    with contextlib.suppress(DataError):
        return locate(key, data_dir)
    return download(key, target_dir(data_dir), progress=progress)


def download(key: str, root: Path, *, progress: bool) -> Path:
    """Fetch data set ``key`` into ``root`` (under its lock) unless it is there by the time the lock is ours."""
    src = source(key)
    with waiting_lock(root / f".hinterval-{key}.lock", f"to finish downloading {src.title} into {root}") as waited:
        with contextlib.suppress(DataError):
            found = locate(key, str(root))
            if waited:
                print(f"{src.title} is ready in {found}", file=sys.stderr)
            return found
        folder = root / src.folder if not src.unpack else root
        if src.unpack and folder.joinpath(src.folder).exists():  # unreadable, yet there: not ours to replace
            _refuse_folder(src, root)
        todo = [f for f in src.files if not verified(folder / f.filename, f)]  # a file in the way: refused here
        if todo:
            mb = sum(f.size or 0 for f in todo) / 1e6
            print(f"downloading {src.title} ({len(todo)} file{'s' if len(todo) > 1 else ''}, {mb:,.1f} MB) "
                  f"into {root}", file=sys.stderr, flush=True)
            folder.mkdir(parents=True, exist_ok=True)
        for f in todo:
            fetch(f, folder, progress=progress)
        if src.unpack:
            archive = folder / src.files[0].filename
            unpack(archive, root, src.folder)
            if todo:  # downloaded now: not needed any more (an archive that was there already is kept)
                archive.unlink()
        found = locate(key, str(root))  # what the loader will read: a DataError here is a bad archive
        print(f"{src.title} is ready in {found}", file=sys.stderr)
        return found


def _refuse_folder(src: DataSource, root: Path) -> None:
    try:
        locate(src.key, str(root))
    except DataError as exc:
        raise DataError(f"{root / src.folder} exists but is not a complete {src.title} ({exc}); move it away or delete "
                        "it, then run again") from None


def verified(path: Path, f: RemoteFile) -> bool:
    """Whether the official file is at ``path`` (``False``: nothing is).

    Raises:
        DataError: another file is there (it is never replaced).
    """
    from torchvision.datasets.utils import calculate_md5

    if not path.exists():
        return False
    have = calculate_md5(path)
    if have != f.md5:
        raise DataError(f"{path} is there but is not the official file (MD5 {have}, expected {f.md5}); move it away "
                        "or delete it, then run again")
    return True


def _host(url: str) -> str:
    return urlparse(url).netloc or url


def fetch(f: RemoteFile, folder: Path, *, progress: bool) -> Path:
    """Download ``folder/<file>`` from its first mirror that answers (resuming a ``.part``), verified
    against its MD5 sum; only then is it renamed to its final name."""
    from torchvision.datasets.utils import calculate_md5

    path = folder / f.filename
    part = path.with_name(path.name + ".part")
    unreachable = []
    for url in f.urls:
        reason = _download(url, part, f, progress)
        if reason is None:
            break
        unreachable.append(f"{_host(url)}: {reason}")
    else:
        raise DownloadError(f"cannot download {f.filename} ({'; '.join(unreachable)}); without internet access here, "
                            f"fetch {f.urls[0]} elsewhere (MD5 {f.md5}), copy it to {path} and run the same command "
                            "again: it is verified and used from there")
    have = calculate_md5(part)
    if have != f.md5:
        part.unlink()
        raise DownloadError(f"checksum mismatch for {f.filename} from {_host(url)}: MD5 {have}, expected {f.md5}; "
                            "the download was deleted, run the same command again to fetch it afresh")
    os.replace(part, path)
    return path


def _download(url: str, part: Path, f: RemoteFile, progress: bool) -> Optional[str]:
    """Download ``url`` into ``part``, resuming what is there. Returns why the server could not be
    reached (then the next mirror is tried), or ``None`` once ``part`` holds the whole file.

    Raises:
        DownloadError: the transfer was cut off (``part`` keeps what arrived: the next run resumes).
    """
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    if f.size is not None and have >= f.size:
        if have == f.size:
            return None
        part.unlink()
        have = 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={have}-"} if have else {})}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after what we have: start again
            part.unlink()
            return _download(url, part, f, progress)
        return f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return str(getattr(exc, "reason", None) or exc)
    with resp:
        if have and resp.status != 206:  # the server sends the whole file again
            have = 0
        total = f.size if f.size is not None else (have + resp.length if resp.length is not None else None)
        if have:
            print(f"resuming {f.filename} at {have:,} bytes", file=sys.stderr)
        with open(part, "ab" if have else "wb") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                               unit_divisor=1024, desc=f.filename, file=sys.stderr,
                                                               disable=not progress, mininterval=1.0) as bar:
            cut = None
            try:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
                cut = f"{type(exc).__name__}: {exc}"
    got = part.stat().st_size
    if cut is not None or (total is not None and got < total):
        of = f" of {total:,}" if total is not None else ""
        raise DownloadError(f"download of {f.filename} from {_host(url)} was cut off after {got:,}{of} bytes"
                            f"{f' ({cut})' if cut else ''}; run the same command again to resume it")
    return None


def _unsafe_member(archive: Path) -> Optional[str]:
    """The first member that would land outside the folder it is unpacked in (or is a link or device)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = [(n, True) for n in z.namelist()]
    else:
        with tarfile.open(archive) as tar:
            members = [(m.name, m.isfile() or m.isdir()) for m in tar.getmembers()]
    for name, plain in members:
        p = PurePosixPath(name)
        if not plain or p.is_absolute() or ".." in p.parts:
            return name
    return None


def unpack(archive: Path, root: Path, folder: str) -> Path:
    """Unpack ``archive`` and move its top folder ``folder`` to ``root/folder`` in one rename."""
    from torchvision.datasets.utils import extract_archive

    for stale in root.glob(f".{folder}.unpacking-*"):  # left by a killed process; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.unpacking-", dir=root))
    try:
        try:
            bad = _unsafe_member(archive)
            if bad is None:
                extract_archive(str(archive), str(tmp))
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
            raise DownloadError(f"cannot unpack {archive} ({exc}); delete it and run again") from None
        if bad is not None:
            raise DownloadError(f"{archive} holds {bad!r}, which would land outside {root}; not unpacked")
        if not (tmp / folder).is_dir():
            raise DownloadError(f"{archive} holds no {folder}/ folder; delete it and run again")
        os.rename(tmp / folder, root / folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / folder
