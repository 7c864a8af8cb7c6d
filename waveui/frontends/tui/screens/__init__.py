"""The app's screens: the run's main screen, one task's detail, help and the modal questions."""
