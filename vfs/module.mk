# vfs/: the replicating VFS (sources added as they land)
