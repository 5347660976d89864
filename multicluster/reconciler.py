"""The MultiClusterResource controller, under the name the house layout gives it (see multicluster/delivery/).

The daemon does, when config.master is set:

    controller = Controller(config, clients, supervisor)          # options=DeliveryOptions(...) optional
    supervisor.spawn("delivery", controller.run)
"""

from multicluster.delivery import Controller, DeliveryOptions

__all__ = ["Controller", "DeliveryOptions"]
