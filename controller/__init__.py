"""C: the controller and its CMA-ES training."""

from common.startup import quiet_tensorflow_startup

quiet_tensorflow_startup()  # before anything loads TensorFlow: its start-up lines stay off the screen

from controller.model import Controller  # noqa: E402

__all__ = ["Controller"]
