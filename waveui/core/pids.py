"""A process's identity: its pid and its create time, and how closely two readings of that time agree."""

# psutil derives create_time from the boot time, which the kernel recomputes
# from the wall clock: in another waveui process (resume after a crash) the
# same process can show a create time shifted by a clock step. A pid reused
# within this window by another session leader is not a practical concern.
CREATE_TIME_TOLERANCE = 1.0
