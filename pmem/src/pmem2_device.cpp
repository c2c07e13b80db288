// Pmem2Device: filled in by the device work.
