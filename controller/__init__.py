"""C: the controller and its CMA-ES training."""

from controller.model import Controller

__all__ = ["Controller"]
