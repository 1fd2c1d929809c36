"""Domain-free helpers: option checks, optional imports, atomic writes, seeds, processes."""
