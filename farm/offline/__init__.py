"""Offline rescoring's pure parts: reading inputs with row numbers, flattening results, the report."""

__all__: list[str] = []
