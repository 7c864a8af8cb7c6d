"""Themes: the packaged ones load, the root copies match, broken user files are reported and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui.helpers import SIZE, make_app, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui import themes
from waveui.frontends.tui.themes import STATE_COLOURS, ThemeError, load_themes, packaged_theme_dir, theme_from_data

ROOT_THEMES = Path(__file__).resolve().parents[2] / "themes"


def test_packaged_themes_load_and_set_every_state_colour():
    loaded, errors = load_themes([packaged_theme_dir()])
    assert errors == []
    assert {t.name for t in loaded} >= {"waveui-dark", "waveui-light", "waveui-high-contrast"}
    for theme in loaded:
        assert set(theme.variables) >= set(STATE_COLOURS), theme.name


@pytest.mark.skipif(not ROOT_THEMES.is_dir(), reason="not a source checkout")
def test_the_packaged_themes_are_the_top_level_folder():
    """One copy: the package's themes folder is the project's top-level themes/ (a link the wheel resolves)."""
    assert packaged_theme_dir().resolve() == ROOT_THEMES.resolve()


@pytest.mark.parametrize("data, problem", [
    ({"primary": "#fff"}, "name: missing"),
    ({"name": "x", "primary": "not-a-colour"}, "primary: 'not-a-colour' is not a colour"),
    ({"name": "x", "primary": "#fff", "dark": "yes"}, "dark: must be true or false"),
    ({"name": "x", "primary": "#fff", "primery": "#000"}, "unknown key 'primery'"),
    ({"name": "x", "primary": "#fff", "variables": {"task-done": "greenish"}}, "variables.task-done"),
])
def test_a_bad_theme_says_what_is_wrong(data, problem):
    with pytest.raises(ThemeError, match=problem.replace("(", r"\(")):
        theme_from_data(data)


def write_user_themes(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "ocean.toml").write_text('name = "ocean"\nprimary = "#0077be"\n[variables]\ntask-done = "#00ffaa"\n')
    (folder / "torn.toml").write_text('name = "torn"\nprimary = "#fff\n')
    (folder / "wrong.toml").write_text('name = "wrong"\nprimary = "blurple"\n')


async def test_broken_user_themes_are_reported_once_and_skipped(tmp_path, monkeypatch):
    user = tmp_path / "config" / "themes"
    write_user_themes(user)
    monkeypatch.setattr(themes, "user_theme_dir", lambda: user)
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        warnings = [n for n in app._notifications if n.severity == "warning"]
        assert len(warnings) == 1
        assert "torn.toml" in warnings[0].message and "wrong.toml" in warnings[0].message
        assert "ocean" in app.theme_names and "torn" not in app.available_themes
        app.theme = "ocean"
        await pilot.pause()
        assert app.theme_variables["task-done"] == "#00ffaa"
        assert app.theme_variables["task-failed"] == STATE_COLOURS["task-failed"]  # default for unset ones
