"""``hacoord serve`` liveness timeouts: flag, environment and TOML; refusals naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacoord.server.settings import ConfigError, MemberSettings
from tests.cli.test_serve import BASE, captured, one_error_line, secret, serve  # noqa: F401 (fixtures)


def test_timeouts_default_and_come_from_flags_env_and_toml(tmp_path: Path, secret: Path,  # noqa: F811
                                                           captured: list[MemberSettings]) -> None:  # noqa: F811
    common = [*BASE, "--data-dir", str(tmp_path), "--secret-file", str(secret)]
    assert serve(*common).exit_code == 0
    assert (captured[-1].suspect_after, captured[-1].down_after) == (3.0, 8.0)

    result = serve(*common, "--suspect-after", "1", "--down-after", "2.5")
    assert result.exit_code == 0, result.output
    assert (captured[-1].suspect_after, captured[-1].down_after) == (1.0, 2.5)

    result = serve(*common, "--down-after", "4",
                   env={"HACOORD_SUSPECT_AFTER": "2", "HACOORD_DOWN_AFTER": "30"})
    assert result.exit_code == 0, result.output
    assert (captured[-1].suspect_after, captured[-1].down_after) == (2.0, 4.0)  # the flag wins

    toml = tmp_path / "member.toml"
    toml.write_text("suspect_after = 5.0\ndown_after = 11.0\n")
    result = serve("--config", str(toml), *common)
    assert result.exit_code == 0, result.output
    assert (captured[-1].suspect_after, captured[-1].down_after) == (5.0, 11.0)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--suspect-after", "0"], "suspect_after: must be a number from 0.1"),
    (["--suspect-after", "-1", "--down-after", "5"], "suspect_after: must be a number from 0.1"),
    (["--suspect-after", "3", "--down-after", "3"], "down_after: must be above suspect_after"),
    (["--down-after", "2"], "down_after: must be above suspect_after"),
])
def test_bad_timeouts_are_refused_naming_the_key(args: list[str], fragment: str,
                                                 captured: list[MemberSettings]) -> None:  # noqa: F811
    one_error_line(serve(*BASE, "--data-dir", "d", "--insecure", *args), fragment)
    assert captured == []


def test_settings_validate_names_the_key() -> None:
    settings = MemberSettings("m1", "127.0.0.1:1", "127.0.0.1:2", Path("d"), insecure=True,
                              suspect_after=4.0, down_after=1.0)
    with pytest.raises(ConfigError) as caught:
        settings.validate()
    assert caught.value.key == "down_after"
