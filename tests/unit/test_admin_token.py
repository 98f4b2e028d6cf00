"""The embedded stack's admin token: made once, kept on disk, usable on a command line."""

from __future__ import annotations

from pathlib import Path

from h2s_checkout.embedded_stack import _admin_token
from h2s_checkout.settings import Settings


def test_the_embedded_token_is_made_once_and_read_back(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)

    first = _admin_token(settings, embedded=True)

    assert first is not None
    assert len(first) >= 32
    assert (tmp_path / "admin-token").stat().st_mode & 0o777 == 0o600
    assert _admin_token(settings, embedded=True) == first


def test_no_made_token_looks_like_an_option(tmp_path: Path):
    # `h2s-checkout smoke --token TOKEN` took a token beginning with "-" for an option;
    # base64url tokens began with one once in 64 (seen in CI).
    tokens = []
    for n in range(300):
        (tmp_path / str(n)).mkdir()
        tokens.append(_admin_token(Settings(data_dir=tmp_path / str(n)), embedded=True))

    assert len(set(tokens)) == 300
    assert not [t for t in tokens if t is None or t.startswith("-")]


def test_a_given_token_is_used_and_none_is_made_outside_the_embedded_stack(tmp_path: Path):
    given = Settings(data_dir=tmp_path, admin_token="given-token-0123456789")

    assert _admin_token(given, embedded=True) == "given-token-0123456789"
    assert _admin_token(Settings(data_dir=tmp_path), embedded=False) is None
    assert not (tmp_path / "admin-token").exists()
