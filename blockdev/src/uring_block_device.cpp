// UringBlockDevice: filled in by the device work.
