"""Ray actors that own resources: the cluster-wide quota actor and judge hosts.

They wrap `farm` objects (for example `farm.ratelimit.ModelQuota`, whose `grant` hands out
leases) and hold no scoring logic of their own.
"""

__all__: list[str] = []
