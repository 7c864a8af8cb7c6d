"""The full-screen Textual app of waveui: the live run and the read-only watcher.

Entry points: :class:`waveui.frontends.tui.app.WaveApp`, fed by an
:class:`waveui.frontends.tui.feeds.EventFeed` such as :class:`~waveui.frontends.tui.feeds.ScriptedFeed`
(a list of events) or :class:`~waveui.frontends.tui.feeds.JournalFeed` (a run's journal,
tailed read-only). Nothing is imported here, so :mod:`waveui.frontends.tui.sanitize` and
:mod:`waveui.frontends.tui.feeds` load without Textual.
"""
