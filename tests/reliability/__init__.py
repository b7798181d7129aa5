"""Long-haul reliability suites: the whole stack under faults, load, fuzzing and leak checks."""
