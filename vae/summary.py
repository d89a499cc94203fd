"""TensorBoard summaries written with TensorFlow alone: `tf.summary.scalar/image/text` need the `tensorboard`
package installed (they raise `TBNotInstalledError` otherwise), while these write the same records with the
plugin metadata TensorBoard reads, through the core `tf.summary.write`. Use inside `writer.as_default()`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin: str, data_class: int) -> summary_pb2.SummaryMetadata:
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
                                       data_class=data_class)


def scalar(tag: str, value: float, step: int) -> None:
    """A scalar, shown in TensorBoard's Scalars tab under its `group/name` tag."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                     metadata=_metadata("scalars", summary_pb2.DATA_CLASS_SCALAR))


def image(tag: str, picture: np.ndarray, step: int) -> None:
    """One (H, W, 3) uint8 image, shown in TensorBoard's Images tab."""
    picture = np.asarray(picture, np.uint8)
    encoded = tf.image.encode_png(picture)
    tensor = tf.stack([tf.constant(str(picture.shape[1])), tf.constant(str(picture.shape[0])), encoded])
    tf.summary.write(tag, tensor, step=step, metadata=_metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE))


def text(tag: str, markdown: str, step: int) -> None:
    """A Markdown text, shown in TensorBoard's Text tab (e.g. the run's hyperparameters)."""
    tf.summary.write(tag, tf.constant(markdown), step=step,
                     metadata=_metadata("text", summary_pb2.DATA_CLASS_TENSOR))
