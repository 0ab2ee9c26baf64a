"""``--resume`` restores only Tune state that this user's own sweep driver wrote.

Why: Ray Tune keeps a sweep's driver state as pickles (``tuner.pkl``, ``searcher-state-*.pkl``,
``callback-states-*.pkl``, and pickled trials inside ``experiment_state-*.json``), and
``Tuner.restore`` unpickles them. Unpickling runs whatever code the file names, so resuming a
sweep directory someone handed you (or one another account could write to) would run their code
as you, just as ``torch.load(weights_only=False)`` on a stranger's checkpoint would.

So the driver keeps a signed copy of that state: :class:`StateSigner` copies Tune's top-level
state files into ``<results>/<name>/tune_state.signed.json`` every second while trials run, and
once more when they stop, with an HMAC-SHA256 over the copy under a key only this user can read
(``~/.config/hinterval/sweep.key``, made on first use with mode 0600, in a 0700 directory;
``$XDG_CONFIG_HOME`` moves it). Before ``Tuner.restore``, :func:`signed_state` checks the MAC and
:func:`put_back` puts exactly the signed files back into Tune's experiment directory (anything else there that
Tune would read is removed), or refuses with one line. A stranger without the key cannot make a
valid copy, and a file planted next to it is never read.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import Dict, Optional

from hinterval.errors import UserError
from hinterval.files import write_json

#: the signed copy of Tune's state, in the sweep's results directory
SIGNED_STATE = "tune_state.signed.json"
#: seconds between two copies while trials run (Tune saves its state every 2 s)
SIGN_EVERY_S = 1.0
KEY_BYTES = 32


def key_path() -> Path:
    """Where this user's sweep key lives: ``$XDG_CONFIG_HOME/hinterval/sweep.key`` (default ``~/.config``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "hinterval" / "sweep.key"


def load_key(*, create: bool) -> Optional[bytes]:
    """This user's key (made with mode 0600 when ``create`` and there is none; ``None`` if absent).

    Raises:
        UserError: the key file is not a regular file of this user, or others may read or write it.
    """
    path = key_path()
    if create and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:  # another driver made it just now
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(KEY_BYTES))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"sweep key {path}: {exc.strerror or exc}; remove it (a new one is made)") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise UserError(f"sweep key {path} must be a file of yours that only you can read and write "
                            f"(mode 0600, now {stat.filemode(st.st_mode)}); `chmod 600 {path}`, or remove it if "
                            "someone else could have read it (sweeps signed with it can then not be resumed)")
        key = f.read()
    if len(key) < KEY_BYTES:
        raise UserError(f"sweep key {path} is damaged (shorter than {KEY_BYTES} bytes); remove it (a new one is made)")
    return key


def _mac(key: bytes, experiment: str, files: Dict[str, str]) -> str:
    body = json.dumps({"experiment": experiment, "files": files}, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _filesystem(experiment_path: str):
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(experiment_path)


def _state_files(fs, path: str, *, hidden: bool = False) -> Dict[str, str]:
    """Tune's top-level state files in the experiment directory (what ``Tuner.restore`` copies and reads):
    name -> path; ``hidden``: Tune's temporary files (``.<uuid>-...``, left by a kill mid-write) too."""
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return {Path(i.path).name: i.path for i in infos
            if i.type == pafs.FileType.File and i.path.endswith((".json", ".pkl"))
            and (hidden or not Path(i.path).name.startswith("."))}


def sign_state(experiment_path: str, out_dir: str | Path, experiment: str, key: bytes) -> None:
    """Copy Tune's state files of ``experiment_path`` into ``out_dir``'s signed copy (atomically)."""
    fs, path = _filesystem(experiment_path)
    files: Dict[str, str] = {}
    for name, full in sorted(_state_files(fs, path).items()):
        try:
            with fs.open_input_stream(full) as f:
                files[name] = base64.b64encode(f.read()).decode()
        except (FileNotFoundError, OSError):  # replaced by Tune while listed: the next copy has it
            continue
    write_json(Path(out_dir) / SIGNED_STATE, {"experiment": experiment, "files": files,
                                              "mac": _mac(key, experiment, files)})


def signed_state(out_dir: str | Path, experiment: str) -> Dict[str, bytes]:
    """The signed copy of Tune's state in ``out_dir`` (file name -> content), checked against this user's key.

    Raises:
        UserError: there is no signed copy, or it was not signed with this user's key (or was changed).
    """
    copy = Path(out_dir) / SIGNED_STATE
    refuse = (f"--resume: refused: the Tune state of this sweep (Ray unpickles it, which can run any code) {{}}; "
              f"resume only sweeps this account started, or start it again with --overwrite")
    try:
        data = json.loads(copy.read_text())
        files, mac = data["files"], data["mac"]
        ok_shape = isinstance(files, dict) and all(isinstance(v, str) for v in files.values()) and isinstance(mac, str)
    except FileNotFoundError:
        raise UserError(refuse.format(f"has no signed copy ({copy} is missing)")) from None
    except (OSError, ValueError, KeyError, TypeError):
        ok_shape = False
    if not ok_shape:
        raise UserError(refuse.format(f"has a damaged signed copy ({copy})"))
    key = load_key(create=False)
    if key is None or data.get("experiment") != experiment or not hmac.compare_digest(mac, _mac(key, experiment, files)):
        raise UserError(refuse.format(f"was not signed with this user's key ({key_path()})"))
    return {name: base64.b64decode(text) for name, text in files.items()}


def put_back(experiment_path: str, files: Dict[str, bytes]) -> None:
    """Make ``experiment_path`` hold exactly the :func:`signed_state` files Tune reads (others there are removed)."""
    fs, path = _filesystem(experiment_path)
    fs.create_dir(path, recursive=True)
    for name, full in _state_files(fs, path, hidden=True).items():
        if name not in files:  # Tune would copy or read it, and it is not ours
            fs.delete_file(full)
    for name, content in files.items():
        with fs.open_output_stream(f"{path.rstrip('/')}/{name}") as f:
            f.write(content)


class StateSigner(threading.Thread):
    """Keeps the signed copy current while trials run (every :data:`SIGN_EVERY_S`); :meth:`stop` makes a
    last copy. A copy that fails (disk full) is retried at the next tick, and reported once at the end."""

    def __init__(self, experiment_path: str, out_dir: str | Path, experiment: str):
        super().__init__(name="tune-state-signer", daemon=True)
        self.args = (experiment_path, out_dir, experiment)
        self.key = load_key(create=True)
        self._stop_event = threading.Event()
        self.error: Optional[BaseException] = None

    def _sign(self) -> None:
        try:
            sign_state(*self.args, self.key)  # type: ignore[arg-type]
            self.error = None
        except Exception as exc:  # noqa: BLE001 - the sweep goes on; stop() says it
            self.error = exc

    def run(self) -> None:
        while not self._stop_event.wait(SIGN_EVERY_S):
            self._sign()

    def stop(self) -> Optional[BaseException]:
        """Stop copying, make the last copy, and return its error (``None``: the copy is current)."""
        self._stop_event.set()
        if self.is_alive():
            self.join()
        self._sign()
        return self.error
