"""A self-hosted OCI / Docker image registry."""

__version__ = "0.1.0"
