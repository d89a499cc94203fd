"""What an M must provide (`MemoryModel`) so that `rnn.train` trains it and the dream, the agent, the audit, the
iterative rounds and the report run on it, and the registry of M's by name (`--rnn=NAME`).

The paper's M is `rnn.model.MDNRNN` (registered as `mdnrnn`; `--rnn_cell=gru` swaps its LSTM for a GRU). Another
M is a Keras model with the members below, saved as `.keras` (so: registered with
`keras.saving.register_keras_serializable` and a `get_config` holding its constructor's arguments):

    @register_rnn("my_m")                                        # optional: --rnn=my_m once your module is imported
    @keras.saving.register_keras_serializable(package="my_package")
    class MyM(keras.Model): ...

    python -m rnn.train --exp_dir=DIR --rnn=my_package.my_module:MyM    # any process can import it by this name
    train_rnn(exp_dir, config, model=MyM(z_size=64, action_size=1, ...))   # or a ready object, from Python

`examples/custom_m.py` is a complete one in 40 lines. `rnn.train` builds a registered M as
`factory(z_size=, action_size=, hidden_size=, num_mixtures=, predict_done=)` with the series' sizes and the flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from common.errors import UserError
from common.interfaces import interface_problem
from common.registry import Registry

RNN_MODELS = Registry("M", "rnn")  # name -> M class; rnn.model registers the paper's as "mdnrnn"
register_rnn = RNN_MODELS.register

State = tuple[Any, Any]  # (h, c), each (B, hidden_size) float32


class MemoryModel(Protocol):
    """M: predicts a mixture of Gaussians over z_{t+1} (and, with `predict_done`, a death logit) from z_t, a_t.

    State: a pair (h, c) of float32 (B, hidden_size) tensors and nothing else is kept on the model. h is what the
    head and C read (CarRacing's C reads [z, h], Doom's [z, c, h]); c is the rest of the state (an LSTM's cell).
    An M with a single state vector (a GRU) returns zeros for c. Where a restart flag is 1 (Doom: an episode's
    first frame) the state must be zeroed before that step.
    """

    z_size: int  # Z, V's latent size
    action_size: int  # A (CarRacing 3, Doom 1)
    hidden_size: int  # width of h and c
    num_mixtures: int  # K Gaussians per latent dimension
    predict_done: bool  # Doom: a restart flag input and a death logit output

    def initial_state(self, batch: int) -> State:
        """The zero state (h, c) of `batch` sequences."""

    def advance(self, z: Any, action: Any, state: State, restart: Any = None) -> State:
        """One step as plain TF ops (run inside the dream's compiled loop and the agent's compiled act):
        z (B, Z), action (B, A), state, restart (B,) or None -> the next (h, c)."""

    def head(self, h: Any) -> Any:
        """h (..., hidden_size) -> the raw outputs (..., F) that `split_head` reads (a Dense layer will do)."""

    def split_head(self, out: Any) -> tuple[Any, Any]:
        """Raw outputs -> (`rnn.model.MixtureParams` of (..., Z, K) logits (normalised), mu, log sigma; the death
        logit (...) or None without `predict_done`)."""

    def sample(self, params: Any, temperature: Any, seed: Any) -> Any:
        """z_{t+1} (..., Z) drawn at temperature tau with a stateless seed; `rnn.model.sample_mixture` is the
        paper's (logits / tau, noise scaled by sqrt(tau))."""

    def call(self, inputs: Mapping[str, Any], initial_state: State | None = None,
             training: bool | None = None) -> tuple[dict[str, Any], State]:
        """Teacher forcing over a sequence: {"z": (B, T, Z), "action": (B, T, A), "restart": (B, T)} ->
        ({"logits", "mu", "log_sigma"}: (B, T, Z, K), plus "done_logit" (B, T) with `predict_done`), final state.
        Training minimises the mixture NLL of z_{t+1} (and the weighted death cross-entropy) on these."""

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments (Keras saving)."""


def memory_model_problem(model: Any) -> str | None:
    """None when `model` is an M, else one line naming it and what it lacks."""
    return interface_problem(model, MemoryModel, "an M")


def build_rnn(name: str, **sizes: Any) -> MemoryModel:
    """The M registered as `name` (or `module:Class`) built with `sizes`; a bad name, a constructor refusing the
    sizes or a model lacking part of the interface raises a one-line `UserError`."""
    factory = RNN_MODELS.resolve(name)
    try:
        model = factory(**sizes)
    except TypeError as error:
        raise UserError(f"--rnn={name}: cannot build it with {', '.join(sizes)} ({error})") from None
    problem = memory_model_problem(model)
    if problem:
        raise UserError(f"--rnn={name}: {problem}")
    return model
