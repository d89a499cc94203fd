"""Entry points: the pipeline, its stages and the report."""

from common.startup import quiet_tensorflow_startup

quiet_tensorflow_startup()  # before anything loads TensorFlow: its start-up lines stay off the screen
