"""Disk keys for every broker the interop tests start.

The brokers store on the host's file system, shared with whatever else runs there (a CI
machine's may be 90% full): its fullness must neither refuse the tests' writes nor retire
their segments, so only a wholly full file system counts.
"""

HOST_DISK_KEYS = "diskMaxUsedSpaceRatio=100\ndiskSpaceCleanForciblyRatio=100\ndiskSpaceWarningLevelRatio=100\n"
