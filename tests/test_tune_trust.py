"""tune/trust.py: Tune's pickled state goes back for --resume only as this user's driver signed it."""
from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("pyarrow")

from hinterval.errors import UserError  # noqa: E402
from tune import trust  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config"


def _experiment(tmp_path: Path) -> Path:
    exp = tmp_path / "store" / "sw-0123abcd"
    exp.mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(pickle.dumps({"ours": 1}))
    (exp / "experiment_state-1.json").write_text('{"trials": []}')
    (exp / "trial_dir").mkdir()  # trial directories are not Tune's driver state
    return exp


def test_the_key_is_made_private_and_reused(home):
    key = trust.load_key(create=True)
    path = trust.key_path()
    assert path == home / "hinterval" / "sweep.key" and len(key) == trust.KEY_BYTES
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert trust.load_key(create=True) == key
    path.chmod(0o640)
    with pytest.raises(UserError, match="only you can read and write"):
        trust.load_key(create=False)


def test_a_key_that_is_a_link_is_refused(home, tmp_path):
    (home / "hinterval").mkdir(parents=True)
    (tmp_path / "elsewhere").write_bytes(b"k" * 32)
    trust.key_path().symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="sweep key"):
        trust.load_key(create=False)


def test_signed_state_round_trip_restores_exactly_the_signed_files(home, tmp_path):
    exp = _experiment(tmp_path)
    out = tmp_path / "results" / "sw"
    out.mkdir(parents=True)
    trust.sign_state(str(exp), out, "sw-0123abcd", trust.load_key(create=True))
    signed = json.loads((out / trust.SIGNED_STATE).read_text())
    assert sorted(signed["files"]) == ["experiment_state-1.json", "tuner.pkl"]
    # later: someone plants a pickle next to the state and replaces tuner.pkl
    (exp / "searcher-state-9.pkl").write_bytes(b"planted")
    (exp / ".1234-searcher-state-9.pkl").write_bytes(b"planted")
    (exp / "tuner.pkl").write_bytes(b"planted")
    trust.put_back(str(exp), trust.signed_state(out, "sw-0123abcd"))
    assert pickle.loads((exp / "tuner.pkl").read_bytes()) == {"ours": 1}
    assert not (exp / "searcher-state-9.pkl").exists() and not (exp / ".1234-searcher-state-9.pkl").exists()
    assert (exp / "trial_dir").is_dir()


@pytest.mark.parametrize("tamper, match", [
    (lambda d: d["files"].update({"tuner.pkl": "cGxhbnRlZA=="}), "not signed with this user's key"),
    (lambda d: d.update(experiment="sw-ffffffff"), "not signed with this user's key"),
    (lambda d: d.update(mac=d["mac"][::-1]), "not signed with this user's key"),
    (lambda d: d.pop("mac"), "damaged signed copy"),
])
def test_a_changed_copy_is_refused(home, tmp_path, tamper, match):
    exp = _experiment(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    trust.sign_state(str(exp), out, "sw-0123abcd", trust.load_key(create=True))
    data = json.loads((out / trust.SIGNED_STATE).read_text())
    tamper(data)
    (out / trust.SIGNED_STATE).write_text(json.dumps(data))
    with pytest.raises(UserError, match=match):
        trust.signed_state(out, "sw-0123abcd")


def test_another_users_key_does_not_verify(home, tmp_path, monkeypatch):
    exp = _experiment(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    trust.sign_state(str(exp), out, "sw-0123abcd", trust.load_key(create=True))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-user"))
    trust.load_key(create=True)
    with pytest.raises(UserError, match="not signed with this user's key"):
        trust.signed_state(out, "sw-0123abcd")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-key-yet"))
    with pytest.raises(UserError, match="not signed"):
        trust.signed_state(out, "sw-0123abcd")


def test_the_signer_keeps_the_copy_current_and_signs_once_more_at_stop(home, tmp_path, monkeypatch):
    monkeypatch.setattr(trust, "SIGN_EVERY_S", 0.05)
    exp = _experiment(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    signer = trust.StateSigner(str(exp), out, "sw-0123abcd")
    signer.start()
    (exp / "experiment_state-2.json").write_text('{"trials": [1]}')
    assert signer.stop() is None
    assert trust.signed_state(out, "sw-0123abcd")["experiment_state-2.json"] == b'{"trials": [1]}'
    assert os.path.exists(out / trust.SIGNED_STATE)
