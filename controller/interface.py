"""What a C must provide (`ControllerModel`) so that CMA-ES trains it (`controller.train`, in the dream and in the
real game), the agent and the dream act with it and the report lists it, and the registry of C's by name
(`--controller=NAME`).

The paper's C is `controller.model.Controller`, registered as `full` ([z, h]; Doom [z, c, h]) and as its
ablations `z` and `z_hidden`; `full_hidden` adds a small hidden layer beyond the paper's. Another C registers
itself and is then trained by name (or named `module:Class`, which needs no registration):

    @register_controller("my_c")
    @dataclasses.dataclass(frozen=True)
    class MyC: ...           # the members below; built as MyC(env=, variant=, z_size=, hidden_size=)

    python -m controller.train --exp_dir=DIR --env=doomrnn --controller=my_package.my_module:MyC

A C's weights are one flat float32 vector of `num_params` values, what CMA-ES searches. Saved controllers are JSON
({"controller": get_config(), "params": [...]}); loading looks `variant` up in the registry, so `get_config`
returns the constructor's keyword arguments with `variant` = the name the C was built by. Real-game workers are
separate processes that know only the project's registrations: name your own C by `module:Class` there.
"""

from __future__ import annotations

from typing import Any, Protocol

from common.errors import UserError
from common.interfaces import interface_problem
from common.registry import Registry

CONTROLLERS = Registry("C", "controller")  # name -> C class; controller.model registers the paper's
register_controller = CONTROLLERS.register


class ControllerModel(Protocol):
    """C: maps M's state and V's z to an action, with weights given as a flat vector."""

    env: str  # the task: 'carracing' or 'doom'
    variant: str  # the name it was built by (the registry's key; the run folder's name)
    z_size: int  # Z, V's latent size
    hidden_size: int  # width of M's h and c
    action_size: int  # A: 3 CarRacing, 1 Doom
    num_params: int  # length of the flat parameter vector

    def features(self, z: Any, h: Any, c: Any) -> Any:
        """What C reads, (B, F), from z (B, Z) and M's state h, c (B, hidden_size)."""

    def act(self, params: Any, features: Any) -> Any:
        """Outputs (B, A) in [-1, 1] as plain TF ops (the dream compiles them into its loop): `params` is one
        vector (num_params,) shared by the batch, or (B, num_params), one per row (a population at once)."""

    def env_action_tensor(self, output: Any) -> Any:
        """`act`'s outputs -> the environment's action (CarRacing: steer, gas, brake; Doom: the raw value)."""

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (env, variant, z_size, hidden_size, ...), as saved in JSON."""


def controller_problem(controller: Any) -> str | None:
    """None when `controller` is a C, else one line naming it and what it lacks."""
    return interface_problem(controller, ControllerModel, "a C")


def make_controller(name: str, env: str, z_size: int | None = None, hidden_size: int | None = None,
                    **options: Any) -> ControllerModel:
    """The C registered as `name` (or `module:Class`) for `env` with V's and M's sizes; an unknown name, a
    constructor refusing the arguments or a model lacking part of the interface raises a one-line `UserError`."""
    factory = CONTROLLERS.resolve(name)
    try:
        controller = factory(env=env, variant=name, z_size=z_size, hidden_size=hidden_size, **options)
    except TypeError as error:
        raise UserError(f"--controller={name}: cannot build it ({error})") from None
    problem = controller_problem(controller)
    if problem:
        raise UserError(f"--controller={name}: {problem}")
    return controller


def controller_from_config(config: dict[str, Any]) -> ControllerModel:
    """A C from its saved `get_config()` (found by its `variant`)."""
    config = dict(config)
    return make_controller(config.pop("variant"), **config)
