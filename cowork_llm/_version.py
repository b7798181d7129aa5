"""The package version, in a leaf module so anything can import it without cycles."""

__version__ = "0.2.0"
