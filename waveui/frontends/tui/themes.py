"""Themes as TOML data: the packaged ones, then the user's own; a broken file is reported, never fatal.

A theme file holds the fields of a Textual :class:`~textual.theme.Theme`
(``name``, ``primary``, ``background``, ``dark``, …) and a ``[variables]``
table, where the task state colours (``task-running``, ``task-done``, …) may
be overridden. Users drop their files in ``<config folder>/waveui/themes/``
(see :func:`user_theme_dir`); a user theme with a packaged theme's name
replaces it.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import platformdirs
from textual.color import Color, ColorParseError
from textual.theme import Theme

DEFAULT_THEME = "waveui-dark"

# The colours widgets use for task states; a theme's [variables] may override any.
STATE_COLOURS: dict[str, str] = {
    "task-running": "#3b9eff",
    "task-done": "#3fb950",
    "task-failed": "#f85149",
    "task-paused": "#d29922",
    "task-conflicted": "#db61a2",
    "task-waiting": "#8b949e",
    "task-blocked": "#b0705a",
    "critical": "#ffa657",
}
COLOUR_FIELDS = ("primary", "secondary", "accent", "background", "surface", "panel", "foreground",
                 "warning", "error", "success", "boost")
NUMBER_FIELDS = ("luminosity_spread", "text_alpha")


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the problem."""


def packaged_theme_dir() -> Path:
    return Path(str(resources.files("waveui") / "themes"))


def user_theme_dir() -> Path:
    return Path(platformdirs.user_config_dir("waveui")) / "themes"


def theme_folders() -> list[Path]:
    """Where themes come from, later ones overriding earlier ones: the packaged themes, then the user's."""
    return [packaged_theme_dir(), user_theme_dir()]


def _colour(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"{where}: a colour must be a string, not {value!r}")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(f"{where}: {value!r} is not a colour") from None
    return value


def _variables(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ThemeError("variables: must be a table")
    out = {}
    for key, item in value.items():
        if key in STATE_COLOURS:
            out[key] = _colour(item, f"variables.{key}")
        elif isinstance(item, str):
            out[key] = item
        else:
            raise ThemeError(f"variables.{key}: must be a string, not {item!r}")
    return out


def theme_from_data(data: dict) -> Theme:
    """A Theme from a parsed TOML table, every value checked first."""
    fields: dict = {}
    for key, value in data.items():
        if key == "name":
            if not isinstance(value, str) or not value.strip():
                raise ThemeError("name: must be a non-empty string")
            fields[key] = value.strip()
        elif key in COLOUR_FIELDS:
            fields[key] = _colour(value, key)
        elif key == "dark":
            if not isinstance(value, bool):
                raise ThemeError(f"dark: must be true or false, not {value!r}")
            fields[key] = value
        elif key in NUMBER_FIELDS:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ThemeError(f"{key}: must be a number, not {value!r}")
            fields[key] = float(value)
        elif key == "variables":
            fields[key] = _variables(value)
        else:
            raise ThemeError(f"unknown key {key!r}")
    for required in ("name", "primary"):
        if required not in fields:
            raise ThemeError(f"{required}: missing")
    try:
        return Theme(**fields)
    except (TypeError, ValueError) as error:
        raise ThemeError(str(error)) from None


def shown_path(path: Path) -> str:
    """``path`` as a user would type it: under the home folder, with ``~``."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def load_theme_file(path: Path) -> Theme:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as error:
        raise ThemeError(f"{shown_path(path)}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ThemeError(f"{shown_path(path)}: {error}") from None
    try:
        return theme_from_data(data)
    except ThemeError as error:
        raise ThemeError(f"{shown_path(path)}: {error}") from None


def load_themes(folders: list[Path]) -> tuple[list[Theme], list[str]]:
    """Every theme in ``folders`` (later folders override earlier ones by name), and one line per broken file."""
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ThemeError as error:
                errors.append(str(error))
                continue
            themes[theme.name] = theme
    return list(themes.values()), errors
