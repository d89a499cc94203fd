"""One world model copied into a folder of its own, for experiments that train several C's on it (the temperature
sweep, the controller ablation): every C of one table then plays the same V, M and start frames, even if the
experiment's own M is later retrained or another iterative round is added.

The folder (`DIR/temperature_sweep/`, `DIR/controller_ablation/`) is an experiment folder of its own
(`common.layout`), holding copies of one round's V, M and start frames, and `world_model.json`, which records the
round and the SHA-256 of each copied file. A folder holding another world model is refused, so one table never
mixes two.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from common.errors import UserError
from common.layout import ExperimentLayout
from common.storage import atomic_path, file_digest, read_json, write_json


def world_model_files(layout: ExperimentLayout) -> dict[str, Path]:
    """What a dream and the real game need from an experiment folder, by the name `world_model.json` gives each."""
    return {"vae": layout.vae_model, "rnn": layout.rnn_model, "initial_z": layout.initial_z}


def round_world(layout: ExperimentLayout, round_: int | None, purpose: str) -> tuple[int, ExperimentLayout]:
    """The iterative round (default: the last; 0 is the random data's) whose V, M and start frames `purpose` (e.g.
    "the sweep") uses, and its folder; a missing round or file is a one-line `UserError`."""
    rounds = layout.rounds()
    k = len(rounds) - 1 if round_ is None else round_
    if not 0 <= k < len(rounds):
        raise UserError(f"--round={round_}: {layout.root} has rounds 0 to {len(rounds) - 1}")
    for path in world_model_files(rounds[k]).values():
        if not path.exists():
            raise UserError(f"{path}: not found; {purpose} needs V, M and the series (python -m run.pipeline)")
    return k, rounds[k]


def copy_world(folder: ExperimentLayout, k: int, world: ExperimentLayout, used: str = "used") -> ExperimentLayout:
    """`folder` holding copies of round k's V, M and start frames (from `world`), recorded in its
    `world_model.json`; a folder already holding another world model (another round, or a since retrained M) is
    refused, in a line saying what the folder did with it (`used`: "swept", ...). Copies are atomic and kept when
    present, so a killed run resumes."""
    sources = world_model_files(world)
    record = {"round": k, "sha256": {name: file_digest(path) for name, path in sources.items()}}
    recorded = read_json(folder.world_model_record) if folder.world_model_record.exists() else None
    if recorded is not None and recorded != record:
        raise UserError(f"{folder.root}: {used} another world model (round {recorded.get('round')}, or a since "
                        "retrained M); remove that folder to use this one")
    for name, target in world_model_files(folder).items():
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target, suffix=target.suffix) as tmp:
                shutil.copyfile(sources[name], tmp)
    write_json(folder.world_model_record, record)
    return folder
