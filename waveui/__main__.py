"""`python -m waveui`: the same as the `waveui` command."""

from waveui.frontends.cli import run

run()
