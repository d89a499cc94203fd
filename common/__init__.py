"""The ground floor every component stands on: errors, storage formats, the experiment layout, progress lines,
seeding, the worker pool and its thread settings, TensorBoard, the training harness and the paper's numbers.

It imports no other package of this project, so `vae`, `rnn`, `controller`, `envs` and `run` can all use it.
"""
