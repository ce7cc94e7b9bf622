"""Inputs azure-native cannot change in place: changing one replaces the resource.

One table for the three places that need it: the cluster sets every applicable network field
explicitly, the offline plan marks such changes `+-`, and a policy blocks them on protected clusters.
Source: pulumi-azure-native provider/pkg/gen/replacement.go (azure-aks-network-gpu.md §1.2).
"""

FORCE_NEW_NETWORK_FIELDS = (
    "serviceCidr", "serviceCidrs", "dnsServiceIP", "networkMode", "networkPlugin",
    "networkPluginMode", "podCidr", "networkDataplane", "networkPolicy", "outboundType",
)

FORCE_NEW = {
    "azure-native:containerservice:ManagedCluster": (
        "dnsPrefix", "location", "nodeResourceGroup", "linuxProfile", "windowsProfile",
        *(f"networkProfile.{field}" for field in FORCE_NEW_NETWORK_FIELDS),
    ),
    "azure-native:containerservice:AgentPool": ("vmSize", "gpuInstanceProfile"),
}
