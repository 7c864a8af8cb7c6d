"""The app's panes: header, wave timeline, dependency graph, workers, conflicts, log."""
