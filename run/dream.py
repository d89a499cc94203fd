"""Dreams people can watch: M's dream decoded by V, written as a video or played in a window.

    python -m run.dream --exp_dir=exp/doom --env=doom --out=dream.gif
    python -m run.dream --exp_dir=exp/doom --env=doom --out=dream.mp4 --temperature=1.3 --max_steps=600
    python -m run.dream --exp_dir=exp/car --env=carracing --out=car.gif --actions=0,1,0
    python -m run.dream --exp_dir=exp/doom --env=doom --play      # arrows act, +/- change tau, r restarts, Esc quits

A dream runs as in the paper's demos. z_0 is drawn from N(mu, sigma^2) of a real first frame
(`series/initial_z.npz`, which Doom needs; CarRacing falls back to the first frame of a random `series/ep*.npz`).
Then, at every step, C acts on [z, h] ([z, c, h] for Doom), or fixed `--actions` do, or the held arrow keys in
`--play`; M advances and z' is drawn from its mixture at temperature tau. The frame shown is V's decoding of z.
The driver is fixed `--actions`, else `--controller_file`, else the experiment's trained controller, else the
default actions (Doom 0, stand still; CarRacing 0,1,0, straight at full gas). Doom's dream ends when the death
logit > 0 (p > 0.5, not sampled, as in DoomRNN) or at 2,100 steps; CarRacing's M has no death output and runs
`--max_steps`.
A video holds one frame per step dreamt, enlarged `--scale` times with a caption strip (step, tau, Doom's p(death)).
In `--play` a finished dream restarts with the next seed; `--out` then records every frame shown.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from common.errors import DataError, UserError
from common.layout import ExperimentLayout, experiment
from common.seeding import derive_seed
from common.storage import atomic_path, episode_files, read_series

ENVS = ("doom", "carracing")
ACTION_SIZES = {"doom": 1, "carracing": 3}
EPISODE_STEPS = {"doom": 2100, "carracing": 1000}  # the real tasks' limits; DoomRNN ends at 2,100 too
DEFAULT_TEMPERATURE = {"doom": 1.15, "carracing": 1.0}  # Doom: the paper's tau (2018 code 1.25); CarRacing: M's own
DEFAULT_ACTIONS = {"doom": (0.0,), "carracing": (0.0, 1.0, 0.0)}  # stand still; straight ahead at full gas
ACTION_RANGES = {"doom": ((-1.0, 1.0),), "carracing": ((-1.0, 1.0), (0.0, 1.0), (0.0, 1.0))}
VIDEO_STEPS = 300  # default length of a video (10 s at 30 fps)
VIDEO_SUFFIXES = (".gif", ".mp4")
TEMPERATURE_STEP = 0.05  # per key press in --play
MAX_TEMPERATURE = 3.0
CARRACING_BRAKE = 0.8  # the down key's brake, as gymnasium's CarRacing keyboard demo uses


@dataclasses.dataclass(frozen=True)
class DreamConfig:
    """What to dream and how to show it."""

    env: str = "doom"  # 'doom' or 'carracing'
    out: str | None = None  # .gif or .mp4 to write (with --play: records the frames shown)
    temperature: float | None = None  # tau; None: Doom 1.15 (the paper's), CarRacing 1.0
    controller_file: str | None = None  # None: the experiment's trained controller, if any, else fixed actions
    actions: tuple[float, ...] | None = None  # fixed actions, no controller: Doom (a,); CarRacing (steer, gas, brake)
    max_steps: int | None = None  # None: 300 for a video, the task's limit (2,100 / 1,000) in --play
    seed: int = 0  # the dream's start frame and samples; --play's restarts use seeds derived from it
    fps: int = 30
    scale: int = 4  # each 64x64 frame enlarged this many times (nearest neighbour)
    caption: bool = True  # a strip under the frame with the step, tau and (Doom) p(death)
    play: bool = False  # open an interactive window instead of (or while) writing a video
    play_frames: int = 0  # --play stops after this many frames; 0: when the window is closed

    def resolved(self) -> DreamConfig:
        """Validates the fields and fills in the env-dependent defaults; bad values raise `UserError`."""
        if self.env not in ENVS:
            raise UserError(f"--env={self.env}: unknown environment; choose from {', '.join(ENVS)}")
        if self.out and Path(self.out).suffix.lower() not in VIDEO_SUFFIXES:
            raise UserError(f"--out={self.out}: must end in .gif or .mp4")
        temperature = DEFAULT_TEMPERATURE[self.env] if self.temperature is None else float(self.temperature)
        if not 0.0 <= temperature <= MAX_TEMPERATURE:
            raise UserError(f"--temperature={self.temperature}: must be between 0 and {MAX_TEMPERATURE}")
        if self.actions is not None and self.controller_file:
            raise UserError("--actions and --controller_file both choose the driver: pass one")
        if self.actions is not None:
            check_actions(self.env, self.actions)
        cap = EPISODE_STEPS[self.env]
        max_steps = self.max_steps if self.max_steps is not None else (cap if self.play else VIDEO_STEPS)
        if not 1 <= max_steps <= cap:
            raise UserError(f"--max_steps={self.max_steps}: must be between 1 and {cap} for {self.env}")
        if not 0 <= self.seed < 2**31:
            raise UserError(f"--seed={self.seed}: must be between 0 and 2^31 - 1")
        if self.fps < 1:
            raise UserError(f"--fps={self.fps}: must be at least 1")
        if not 1 <= self.scale <= 16:
            raise UserError(f"--scale={self.scale}: must be between 1 and 16")
        if self.play_frames < 0:
            raise UserError(f"--play_frames={self.play_frames}: must be 0 (until closed) or more")
        return dataclasses.replace(self, temperature=temperature, max_steps=max_steps)


def check_actions(env: str, actions: tuple[float, ...]) -> None:
    """Raises `UserError` unless `actions` has the task's size and each value lies in its range."""
    ranges = ACTION_RANGES[env]
    names = ("a",) if env == "doom" else ("steer", "gas", "brake")
    if len(actions) != len(ranges):
        raise UserError(f"--actions={','.join(map(str, actions))}: {env} takes {len(ranges)} value(s): "
                        f"{','.join(names)}")
    for name, value, (low, high) in zip(names, actions, ranges):
        if not low <= value <= high:
            raise UserError(f"--actions: {name}={value} is outside [{low:g}, {high:g}]")


def parse_actions(values: list[str] | None) -> tuple[float, ...] | None:
    """`--actions` as floats ('0,1,0' -> (0.0, 1.0, 0.0)); a non-number raises `UserError`."""
    if not values:
        return None
    try:
        return tuple(float(value) for value in values)
    except ValueError:
        raise UserError(f"--actions={','.join(values)}: expected numbers separated by commas") from None


class StartFrames:
    """Where dreams start: (mu, logvar) of real first frames, from `initial_z.npz` or (CarRacing) series files."""

    def __init__(self, layout: ExperimentLayout, env: str):
        from envs.dream import load_initial_z

        self._files: list[Path] = []
        if env == "doom" or layout.initial_z.exists():
            if not layout.initial_z.exists():
                raise DataError(f"{layout.initial_z}: file not found (the Doom dream starts from it; write it "
                                "with python -m vae.encode)")
            self._mu, self._logvar = load_initial_z(layout.initial_z)
            self.source, self.z_size = layout.initial_z, self._mu.shape[1]
        else:
            self._files = episode_files(layout.series, "series")
            self.source, self.z_size = layout.series, read_series(self._files[0])["mu"].shape[1]

    def sample(self, seed: int) -> np.ndarray:
        """z_0 (Z,) for `seed`: a random stored first frame, then a draw from N(mu, sigma^2) (as DreamDynamics)."""
        from envs.dream import sample_start

        if self._files:
            arrays = read_series(self._files[np.random.default_rng(int(seed)).integers(len(self._files))])
            return sample_start(arrays["mu"][:1], arrays["logvar"][:1], seed)
        return sample_start(self._mu, self._logvar, seed)


class DreamState(NamedTuple):
    """One dream in progress: z (1, Z) and M's (h, c) (1, hidden); step t samples with the seed (seed, t)."""

    z: Any
    h: Any
    c: Any
    step: int
    seed: int


class StepOutput(NamedTuple):
    """What one dream step did, for the caller to show, record or stop on."""

    z: np.ndarray  # (Z,) the z acted on (the frame shown is V's decoding of it)
    action: np.ndarray  # (A,) the action taken (controller's, fixed, or overridden by keys)
    death_probability: float  # Doom: sigmoid of the death logit after the step; CarRacing: 0
    died: bool  # Doom: the death logit > 0


@dataclasses.dataclass(frozen=True)
class DreamRollout:
    """One dream: per step the frame, z and action; `steps` = len(frames); `died` if Doom's M ended it."""

    frames: np.ndarray  # (T, 64, 64, 3) uint8
    latents: np.ndarray  # (T, Z) float32
    actions: np.ndarray  # (T, A) float32
    death_probabilities: np.ndarray  # (T,) float32
    steps: int
    died: bool
    temperature: float
    driver: str  # "controller <file>" or "actions <values>"


DECODE_BATCH = 256  # V decodes a batch ~6x faster per frame than one frame at a time (7 ms a call on 2 cores)


class Dreamer:
    """V, M and the driver, compiled: `step` (act, advance M, sample z' at tau) and `decode` (z -> frames).

    `step` takes a key override per action value (mask, value), so --play and videos share one code path.
    """

    def __init__(self, vae, rnn, starts: StartFrames, controller=None, params: np.ndarray | None = None,
                 actions: tuple[float, ...] | None = None, driver: str = ""):
        import tensorflow as tf

        from envs.dream import dream_step

        self.vae, self.rnn, self.starts, self.controller = vae, rnn, starts, controller
        self.env = "doom" if rnn.predict_done else "carracing"
        size = rnn.action_size
        actions = actions if actions is not None else DEFAULT_ACTIONS[self.env]
        fixed = tf.constant(np.asarray(actions, np.float32).reshape(1, size))
        self.driver = driver or (f"controller ({controller.env}, {controller.variant})" if controller is not None
                                 else "actions " + ",".join(f"{a:g}" for a in actions))
        params_t = None if controller is None else tf.constant(np.asarray(params, np.float32))

        def step(z, h, c, restart, mask, value, temperature, seed):
            if controller is None:
                base = fixed
            else:
                base = controller.env_action_tensor(controller.act(params_t, controller.features(z, h, c)))
            action = mask * value + (1.0 - mask) * base
            z_next, (h, c), done_logit = dream_step(rnn, z, action, (h, c),
                                                     restart if rnn.predict_done else None, temperature, seed)
            if not rnn.predict_done:
                return action[0], z_next, h, c, tf.constant(0.0), tf.constant(False)
            return action[0], z_next, h, c, tf.sigmoid(done_logit[0]), done_logit[0] > 0.0

        def decode(z):
            return tf.cast(tf.round(tf.clip_by_value(vae.decode(z) * 255.0, 0.0, 255.0)), tf.uint8)

        spec = tf.TensorSpec
        self._step = tf.function(step, input_signature=[
            spec([1, rnn.z_size], tf.float32), spec([1, rnn.hidden_size], tf.float32),
            spec([1, rnn.hidden_size], tf.float32), spec([1], tf.float32), spec([size], tf.float32),
            spec([size], tf.float32), spec([], tf.float32), spec([2], tf.int32)])
        self._decode = tf.function(decode, input_signature=[spec([None, rnn.z_size], tf.float32)])
        self._no_override = np.zeros(size, np.float32)

    def reset(self, seed: int) -> DreamState:
        """A new dream: z_0 from a real first frame drawn with `seed`, M's state zero."""
        import tensorflow as tf

        h, c = self.rnn.initial_state(1)
        return DreamState(tf.constant(self.starts.sample(seed)[None]), h, c, 0, int(seed) & 0x7FFFFFFF)

    def step(self, state: DreamState, temperature: float, mask: np.ndarray | None = None,
             value: np.ndarray | None = None) -> tuple[StepOutput, DreamState]:
        """Acts on z_t and dreams z_{t+1}: action values where `mask` is 1 come from `value` (the keys)."""
        import tensorflow as tf

        no_override = self._no_override
        action, z_next, h, c, p_death, died = self._step(
            state.z, state.h, state.c, tf.constant([1.0 if state.step == 0 else 0.0]),
            tf.constant(no_override if mask is None else mask, tf.float32),
            tf.constant(no_override if value is None else value, tf.float32),
            tf.constant(temperature, tf.float32), tf.constant([state.seed, state.step], tf.int32))
        output = StepOutput(state.z.numpy()[0], action.numpy(), float(p_death), bool(died))
        return output, DreamState(z_next, h, c, state.step + 1, state.seed)

    def decode(self, latents: Any) -> np.ndarray:
        """V's frames (T, 64, 64, 3) uint8 of latents (T, Z), in compiled batches."""
        latents = np.asarray(latents, np.float32)
        return np.concatenate([self._decode(latents[start:start + DECODE_BATCH]).numpy()
                               for start in range(0, len(latents), DECODE_BATCH)])

    def rollout(self, seed: int, temperature: float, max_steps: int) -> DreamRollout:
        """One dream from `seed` until Doom's M predicts death or `max_steps` steps, then its frames."""
        state = self.reset(seed)
        outputs = []
        while state.step < max_steps:
            output, state = self.step(state, temperature)
            outputs.append(output)
            if output.died:
                break
        latents = np.stack([o.z for o in outputs])
        return DreamRollout(self.decode(latents), latents, np.stack([o.action for o in outputs]),
                            np.array([o.death_probability for o in outputs], np.float32),
                            len(outputs), outputs[-1].died, float(temperature), self.driver)


def load_dreamer(exp_dir: str | os.PathLike, config: DreamConfig) -> Dreamer:
    """V, M, the start frames and the driver (C or fixed actions) of `exp_dir` for a resolved `config`."""
    from controller.agent import check_compatible
    from controller.evaluate import default_controller_file
    from controller.model import Controller
    from rnn.model import load_rnn
    from vae.encode import load_vae

    layout = experiment(exp_dir, create=False)
    controller = params = None
    path = Path(config.controller_file) if config.controller_file else None
    if path is None and config.actions is None:
        try:
            path = default_controller_file(exp_dir, config.env)
        except UserError:  # no trained controller yet: fixed actions drive the dream
            path = None
    if path is not None:
        controller, params = Controller.load(path)
        if controller.env != config.env:
            raise UserError(f"{path}: a {controller.env} controller cannot drive the {config.env} dream")
    starts = StartFrames(layout, config.env)
    rnn = load_rnn(layout.rnn_model)
    if rnn.predict_done != (config.env == "doom") or rnn.action_size != ACTION_SIZES[config.env]:
        raise DataError(f"{layout.rnn_model}: not a {config.env} M (action size {rnn.action_size}, "
                        f"{'with' if rnn.predict_done else 'without'} the death output)")
    if starts.z_size != rnn.z_size:
        raise DataError(f"{starts.source}: start frames have z size {starts.z_size} but M has {rnn.z_size}")
    vae = load_vae(layout.vae_model, z_size=rnn.z_size)
    if controller is not None:
        check_compatible(vae, rnn, controller)
    return Dreamer(vae, rnn, starts, controller, params, config.actions,
                   driver=f"controller {path}" if controller is not None else "")


def dream_rollout(exp_dir: str | os.PathLike, config: DreamConfig) -> DreamRollout:
    """Dreams one episode of `exp_dir` with `config`; no files are written."""
    config = config.resolved()
    return load_dreamer(exp_dir, config).rollout(config.seed, config.temperature, config.max_steps)


def caption_text(step: int, temperature: float, death_probability: float | None) -> str:
    text = f"step {step}  tau {temperature:.2f}"
    return text if death_probability is None else f"{text}  p(death) {death_probability:.2f}"


def render_frames(frames: np.ndarray, scale: int = 4, captions: list[str] | None = None) -> np.ndarray:
    """Enlarges (T, 64, 64, 3) frames `scale` times (nearest neighbour) and adds a caption strip under each."""
    frames = np.asarray(frames, np.uint8).repeat(scale, axis=1).repeat(scale, axis=2)
    if captions is None:
        return frames
    from PIL import Image, ImageDraw, ImageFont

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
    import imageio.v2 as imageio_v2
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


# ---- --play: an interactive window ----

@dataclasses.dataclass(frozen=True)
class PlayResult:
    frames: int  # frames shown
    dreams: int  # dreams started (a restart, a death or the step limit starts another)
    temperature: float  # tau when the window closed


def key_override(env: str, held: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """(mask, value) of the action values the held arrow keys set: Doom left -1 / right +1 (both: stay);
    CarRacing left/right steer, up full gas, down brake."""
    import pygame

    left, right = pygame.K_LEFT in held, pygame.K_RIGHT in held
    size = ACTION_SIZES[env]
    mask, value = np.zeros(size, np.float32), np.zeros(size, np.float32)
    if left or right:
        mask[0], value[0] = 1.0, float(right) - float(left)
    if env == "carracing":
        if pygame.K_UP in held:
            mask[1], value[1] = 1.0, 1.0
        if pygame.K_DOWN in held:
            mask[2], value[2] = 1.0, CARRACING_BRAKE
    return mask, value


def temperature_change(env: str, key: int) -> float:
    """How much a key press changes tau: +/- (also on the keypad); Doom also up/down (CarRacing drives with them)."""
    import pygame

    up = {pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS} | ({pygame.K_UP} if env == "doom" else set())
    down = {pygame.K_MINUS, pygame.K_UNDERSCORE, pygame.K_KP_MINUS} | ({pygame.K_DOWN} if env == "doom" else set())
    return TEMPERATURE_STEP if key in up else -TEMPERATURE_STEP if key in down else 0.0


def play_dream(exp_dir: str | os.PathLike, config: DreamConfig) -> PlayResult:
    """Shows the dream in a pygame window, the arrow keys overriding the driver while held, until the window
    is closed, Esc is pressed or `config.play_frames` frames were shown; `config.out` records them."""
    config = dataclasses.replace(config, play=True).resolved()
    dreamer = load_dreamer(exp_dir, config)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    pygame.display.init()  # video and events only: no audio device is opened
    pygame.font.init()
    try:
        side, text_height = 64 * config.scale, 48
        screen = pygame.display.set_mode((side, side + text_height))
        pygame.display.set_caption(f"World Models: the {config.env} dream")
        font = pygame.font.Font(None, 20)
        clock = pygame.time.Clock()
        help_text = ("arrows: move" if config.env == "doom" else "arrows: steer, gas, brake") + \
            "   +/-: tau   r: restart   Esc: quit"
        arrows = (pygame.K_LEFT, pygame.K_RIGHT, pygame.K_UP, pygame.K_DOWN)
        temperature, dreams, shown = config.temperature, 1, 0
        recorded: list[np.ndarray] = []
        captions: list[str] = []
        state = dreamer.reset(config.seed)
        running = True
        while running and (config.play_frames == 0 or shown < config.play_frames):
            restart = False
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    running = False
                elif event.type == pygame.KEYDOWN:
                    restart |= event.key == pygame.K_r
                    temperature = min(MAX_TEMPERATURE, max(0.0, round(
                        temperature + temperature_change(config.env, event.key), 2)))
            if not running:
                break
            if restart:
                state, dreams = dreamer.reset(derive_seed(config.seed, dreams)), dreams + 1
            pressed = pygame.key.get_pressed()
            mask, value = key_override(config.env, {key for key in arrows if pressed[key]})
            frame = dreamer.decode(state.z)[0]
            output, state = dreamer.step(state, temperature, mask, value)
            shown += 1
            text = caption_text(state.step, temperature,
                                output.death_probability if config.env == "doom" else None)
            if config.out:
                recorded.append(frame)
                captions.append(text)
            image = pygame.image.frombuffer(frame.tobytes(), (64, 64), "RGB")
            screen.fill((0, 0, 0))
            screen.blit(pygame.transform.scale(image, (side, side)), (0, 0))
            screen.blit(font.render(text + ("  (you)" if mask.any() else ""),
                                    True, (230, 230, 230)), (4, side + 6))
            screen.blit(font.render(help_text, True, (160, 160, 160)), (4, side + 26))
            pygame.display.flip()
            if output.died or state.step >= config.max_steps:
                state, dreams = dreamer.reset(derive_seed(config.seed, dreams)), dreams + 1
            clock.tick(config.fps)
    finally:
        pygame.quit()
    if config.out and recorded:
        write_video(render_frames(np.stack(recorded), config.scale, captions if config.caption else None),
                    config.out, config.fps)
    return PlayResult(shown, dreams, temperature)


def run_dream(exp_dir: str | os.PathLike, config: DreamConfig) -> DreamRollout | PlayResult:
    """`play_dream` with `config.play`, else `make_dream_video`; prints a one-line summary."""
    config = config.resolved()
    if config.play:
        result = play_dream(exp_dir, config)
        print(f"dream: played {result.frames} frames of {result.dreams} dream(s), tau {result.temperature:.2f}"
              + (f"; recorded to {config.out}" if config.out and result.frames else ""))
        return result
    if not config.out:
        raise UserError("nothing to do: pass --out=FILE.gif or FILE.mp4, or --play")
    rollout = make_dream_video(exp_dir, config)
    end = "M predicted death" if rollout.died else "step limit"
    print(f"dream: {rollout.steps} steps ({end}) at tau {rollout.temperature:.2f}, driven by {rollout.driver}; "
          f"wrote {config.out}")
    return rollout


def main(argv) -> None:
    from absl import flags

    FLAGS = flags.FLAGS
    run_dream(FLAGS.exp_dir, DreamConfig(
        env=FLAGS.env, out=FLAGS.out, temperature=FLAGS.temperature, controller_file=FLAGS.controller_file,
        actions=parse_actions(FLAGS.actions), max_steps=FLAGS.max_steps, seed=FLAGS.seed, fps=FLAGS.fps,
        scale=FLAGS.scale, caption=FLAGS.caption, play=FLAGS.play, play_frames=FLAGS.play_frames))


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("exp_dir", None, "Experiment folder with vae/vae.keras, rnn/rnn.keras and series/.",
                        required=True)
    flags.DEFINE_string("env", "doom", "Whose dream: doom or carracing.")
    flags.DEFINE_string("out", None, "Video to write: FILE.gif or FILE.mp4 (with --play: records what is shown).")
    flags.DEFINE_float("temperature", None, "tau (default: Doom 1.15, the paper's; CarRacing 1.0).")
    flags.DEFINE_string("controller_file", None, "Controller JSON driving the dream (default: the experiment's "
                        "trained controller if any, else fixed --actions).")
    flags.DEFINE_list("actions", None, "Fixed actions instead of a controller: Doom a in [-1, 1] (default 0); "
                      "CarRacing steer,gas,brake (default 0,1,0).")
    flags.DEFINE_integer("max_steps", None, f"Steps to dream (default {VIDEO_STEPS} for a video, the task's "
                         "limit in --play; at most Doom 2,100, CarRacing 1,000).")
    flags.DEFINE_integer("seed", 0, "Seed of the start frame and of M's samples.")
    flags.DEFINE_integer("fps", 30, "Frames per second of the video and of --play.")
    flags.DEFINE_integer("scale", 4, "Enlarge each 64x64 frame this many times.")
    flags.DEFINE_bool("caption", True, "Add a strip with the step, tau and (Doom) p(death) under each frame.")
    flags.DEFINE_bool("play", False, "Open a window: arrows override the driver, +/- (Doom: also up/down) "
                      "change tau, r restarts, Esc quits.")
    flags.DEFINE_integer("play_frames", 0, "--play stops after this many frames (0: when closed).")


if __name__ == "__main__":
    from common.errors import run_main

    define_flags()
    run_main(main)
