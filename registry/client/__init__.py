"""One registry HTTP client (token dance, retries, streaming), used by the mirror and the runtime."""

from registry.client.client import (ManifestResponse, RegistryClient, UpstreamError, UpstreamNotFound,
                                    UpstreamThrottled, UpstreamUnavailable)

__all__ = ["ManifestResponse", "RegistryClient", "UpstreamError", "UpstreamNotFound", "UpstreamThrottled",
           "UpstreamUnavailable"]
