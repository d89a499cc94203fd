"""--play: the dream in a pygame window, the arrow keys overriding the driver while held.

Arrows act (Doom: left/right; CarRacing: steer, gas, brake), +/- change tau (Doom: also up/down), r restarts,
Esc quits. A finished dream restarts with the next seed; `--out` records every frame shown.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from common.seeding import derive_seed
from run.dream_config import ACTION_SIZES, MAX_TEMPERATURE, DreamConfig
from run.dream_rollout import Dreamer, load_dreamer
from run.dream_video import caption_text, render_frames, write_video

TEMPERATURE_STEP = 0.05  # per key press
CARRACING_BRAKE = 0.8  # the down key's brake, as gymnasium's CarRacing keyboard demo uses
TEXT_HEIGHT = 48  # pixels under the frame for the caption and the keys' help


@dataclasses.dataclass(frozen=True)
class PlayResult:
    frames: int  # frames shown
    dreams: int  # dreams started (a restart, a death or the step limit starts another)
    temperature: float  # tau when the window closed


def key_override(env: str, held: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """(mask, value) of the action values the held arrow keys set: Doom left -1 / right +1 (both: stay);
    CarRacing left/right steer, up full gas, down brake."""
    import pygame  # pygame (and its display) only for --play

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


def read_events(env: str, temperature: float) -> tuple[bool, bool, float]:
    """(keep running, restart, tau) after the window's events since the last frame."""
    import pygame

    running, restart = True, False
    for event in pygame.event.get():
        if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
            running = False
        elif event.type == pygame.KEYDOWN:
            restart |= event.key == pygame.K_r
            temperature = min(MAX_TEMPERATURE, max(0.0, round(temperature + temperature_change(env, event.key), 2)))
    return running, restart, temperature


class Window:
    """The pygame window: the enlarged frame, its caption and the keys' help underneath."""

    def __init__(self, config: DreamConfig):
        import pygame

        self.side = 64 * config.scale
        self.screen = pygame.display.set_mode((self.side, self.side + TEXT_HEIGHT))
        pygame.display.set_caption(f"World Models: the {config.env} dream")
        self.font = pygame.font.Font(None, 20)
        self.clock = pygame.time.Clock()
        self.fps = config.fps
        self.help = ("arrows: move" if config.env == "doom" else "arrows: steer, gas, brake") + \
            "   +/-: tau   r: restart   Esc: quit"

    def show(self, frame: np.ndarray, text: str) -> None:
        """Draws a (64, 64, 3) frame and its caption, then waits for the next frame's time."""
        import pygame

        image = pygame.image.frombuffer(frame.tobytes(), (64, 64), "RGB")
        self.screen.fill((0, 0, 0))
        self.screen.blit(pygame.transform.scale(image, (self.side, self.side)), (0, 0))
        self.screen.blit(self.font.render(text, True, (230, 230, 230)), (4, self.side + 6))
        self.screen.blit(self.font.render(self.help, True, (160, 160, 160)), (4, self.side + 26))
        pygame.display.flip()
        self.clock.tick(self.fps)


def play_frames(dreamer: Dreamer, window: Window, config: DreamConfig) -> tuple[PlayResult, list, list[str]]:
    """Shows dreams until the window closes or `config.play_frames` frames; (result, frames shown, captions)."""
    import pygame

    arrows = (pygame.K_LEFT, pygame.K_RIGHT, pygame.K_UP, pygame.K_DOWN)
    temperature, dreams, shown = config.temperature, 1, 0
    recorded: list[np.ndarray] = []
    captions: list[str] = []
    dream = dreamer.reset(config.seed)
    while config.play_frames == 0 or shown < config.play_frames:
        running, restart, temperature = read_events(config.env, temperature)
        if not running:
            break
        if restart:
            dream, dreams = dreamer.reset(derive_seed(config.seed, dreams)), dreams + 1
        pressed = pygame.key.get_pressed()
        mask, value = key_override(config.env, {key for key in arrows if pressed[key]})
        frame = dreamer.decode(dream.state.z)[0]
        output, dream = dreamer.step(dream, temperature, mask, value)
        shown += 1
        text = caption_text(dream.step, temperature, output.death_probability if config.env == "doom" else None)
        if config.out:
            recorded.append(frame)
            captions.append(text)
        window.show(frame, text + ("  (you)" if mask.any() else ""))
        if output.ended:
            dream, dreams = dreamer.reset(derive_seed(config.seed, dreams)), dreams + 1
    return PlayResult(shown, dreams, temperature), recorded, captions


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
        result, recorded, captions = play_frames(dreamer, Window(config), config)
    finally:
        pygame.quit()
    if config.out and recorded:
        write_video(render_frames(np.stack(recorded), config.scale, captions if config.caption else None),
                    config.out, config.fps)
    return result
