"""The Ray Serve application, its Serve config and the cluster manifests."""

__all__: list[str] = []
