"""One registry HTTP client (token dance, retries, streaming), used by the mirror and the runtime."""

from registry.client.client import (BlobSource, ManifestResponse, PushedManifest, Referrers, RegistryClient,
                                    UpstreamError, UpstreamNotFound, UpstreamThrottled, UpstreamUnavailable)

__all__ = ["BlobSource", "ManifestResponse", "PushedManifest", "Referrers", "RegistryClient", "UpstreamError",
           "UpstreamNotFound", "UpstreamThrottled", "UpstreamUnavailable"]
