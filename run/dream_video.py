"""Dream videos: frames enlarged with a caption strip (step, tau, Doom's p(death)), written as GIF or MP4."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.errors import UserError
from common.storage import atomic_path
from run.dream_config import VIDEO_SUFFIXES, DreamConfig
from run.dream_rollout import DreamRollout, dream_rollout


def caption_text(step: int, temperature: float, death_probability: float | None) -> str:
    """The caption of one frame: the step, tau and (Doom) p(death)."""
    text = f"step {step}  tau {temperature:.2f}"
    return text if death_probability is None else f"{text}  p(death) {death_probability:.2f}"


def render_frames(frames: np.ndarray, scale: int = 4, captions: list[str] | None = None) -> np.ndarray:
    """Enlarges (T, 64, 64, 3) frames `scale` times (nearest neighbour) and adds a caption strip under each."""
    frames = np.asarray(frames, np.uint8).repeat(scale, axis=1).repeat(scale, axis=2)
    if captions is None:
        return frames
    width, strip = frames.shape[2], 4 * max(4, 2 * scale)  # 32 px at scale 4: even, so H.264 accepts it
    font = ImageFont.load_default(size=strip * 0.55)
    out = np.zeros((len(frames), frames.shape[1] + strip, width, 3), np.uint8)
    out[:, :frames.shape[1]] = frames
    for image, text in zip(out, captions):
        canvas = Image.new("RGB", (width, strip))
        ImageDraw.Draw(canvas).text((4, strip // 2), text, fill=(230, 230, 230), font=font, anchor="lm")
        image[frames.shape[1]:] = np.asarray(canvas)
    return out


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: int = 30) -> Path:
    """Writes (T, H, W, 3) uint8 frames as a looping GIF or an H.264 MP4 (by suffix), atomically.

    A GIF keeps one frame per step, but Pillow merges consecutive identical frames into one longer frame.
    """
    import imageio.v2 as imageio_v2  # imageio (and its FFMPEG plugin) only when a video is written
    import imageio.v3 as imageio_v3

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise UserError(f"{path}: must end in .gif or .mp4")
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix == ".gif":  # imageio's Pillow plugin takes the frame time in milliseconds
            imageio_v3.imwrite(tmp, np.asarray(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            imageio_v2.mimsave(tmp, list(frames), format="FFMPEG", fps=fps, macro_block_size=1)
    return path


def make_dream_video(exp_dir: str | os.PathLike, config: DreamConfig) -> DreamRollout:
    """Dreams one episode and writes it to `config.out`; returns the rollout."""
    config = config.resolved()
    if not config.out:
        raise UserError("--out is required to write a video")
    rollout = dream_rollout(exp_dir, config)
    captions = None
    if config.caption:
        doom = config.env == "doom"
        captions = [caption_text(t + 1, rollout.temperature, float(p) if doom else None)
                    for t, p in enumerate(rollout.death_probabilities)]
    write_video(render_frames(rollout.frames, config.scale, captions), config.out, config.fps)
    return rollout
