"""`python -m waveui`: the same as the `waveui` command."""

from waveui.cli import run

run()
