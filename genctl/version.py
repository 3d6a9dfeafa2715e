"""The package version, importable without the package's public API (which reaches every layer)."""
__version__ = "0.1.0"
