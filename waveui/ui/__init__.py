"""The full-screen Textual app of waveui: the live run and the read-only watcher.

Entry points: :class:`waveui.ui.app.WaveApp`, fed by an
:class:`waveui.ui.feeds.EventFeed` such as :class:`~waveui.ui.feeds.ScriptedFeed`
(a list of events) or :class:`~waveui.ui.feeds.JournalFeed` (a run's journal,
tailed read-only). Nothing is imported here, so :mod:`waveui.ui.sanitize` and
:mod:`waveui.ui.feeds` load without Textual.
"""
