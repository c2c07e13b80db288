// FileBlockDevice: filled in by the device work.
