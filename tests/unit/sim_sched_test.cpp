// Scheduler and determinism tests: filled in by the next commit (the CMake line landed first).
