"""CarRacing-v3 with the same pixels at less than half the step time: the road is transformed as arrays, the
score's font is loaded once.

Gymnasium's `CarRacing._render_road` rotates, scales and bounds-checks all ~800 road and grass polygons one
`pygame.math.Vector2` at a time in Python on every frame (2 of the 2.3 ms a step a profile attributes to it),
though only ~60 of them are on screen. `FastRoadCarRacing` computes all vertices in one numpy expression per
frame and draws only the polygons the original would draw, in the same order, with the same float coordinates:
the cosine and sine come from pygame's own `rotate_rad` of the unit vector (including its exact special cases at
multiples of 90 degrees), and `c * x - s * y` in float64 is the same IEEE arithmetic its C code does, so every
frame is bit-identical (`tests/test_envs.py` compares whole episodes with the stock environment).

Gymnasium's `_render` also loads the score's font from disk on every frame (1.1 ms of a ~6 ms step here);
`FastRoadCarRacing._render` is the same method with the font loaded once per environment.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pygame
from gymnasium.envs.box2d import car_racing
from gymnasium.envs.box2d.car_racing import CarRacing
from pygame import gfxdraw

STOCK_ID = "CarRacing-v3"


def _grass_patches() -> np.ndarray:
    """The grass quads `_render_road` draws, in its order: (400, 4, 2)."""
    dim = car_racing.GRASS_DIM
    return np.array([[(dim * x + dim, dim * y), (dim * x, dim * y), (dim * x, dim * y + dim),
                      (dim * x + dim, dim * y + dim)]
                     for x in range(-20, 20, 2) for y in range(-20, 20, 2)], np.float64)


class FastRoadCarRacing(CarRacing):
    """`CarRacing` whose `_render_road` is vectorised and whose score font is cached; physics, rewards and pixels
    are the stock env's."""

    _GRASS = _grass_patches()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._road_source = None  # the `road_poly` list the cached arrays below were built from
        self._road_vertices = self._road_colors = None
        self._score_font = None  # loaded on the first frame: gymnasium loads it from disk on every frame

    def _render(self, mode: str):
        """Gymnasium's `_render` for the off-screen modes, with the score's font loaded once; "human" is the stock."""
        if mode == "human" or "t" not in self.__dict__:
            return super()._render(mode)
        if self._score_font is None:
            pygame.font.init()
            self._score_font = pygame.font.Font(pygame.font.get_default_font(), 42)
        width, height = car_racing.WINDOW_W, car_racing.WINDOW_H
        self.surf = pygame.Surface((width, height))
        angle = -self.car.hull.angle
        zoom = 0.1 * car_racing.SCALE * max(1 - self.t, 0) + car_racing.ZOOM * car_racing.SCALE * min(self.t, 1)
        scroll = pygame.math.Vector2((-self.car.hull.position[0] * zoom, -self.car.hull.position[1] * zoom))
        scroll = scroll.rotate_rad(angle)
        translation = (width / 2 + scroll[0], height / 4 + scroll[1])
        self._render_road(zoom, translation, angle)
        self.car.draw(self.surf, zoom, translation, angle, mode not in ["state_pixels_list", "state_pixels"])
        self.surf = pygame.transform.flip(self.surf, False, True)
        self._render_indicators(width, height)
        text = self._score_font.render(f"{self.reward:04.0f}", True, (255, 255, 255), (0, 0, 0))
        text_rect = text.get_rect()
        text_rect.center = (60, height - height * 2.5 / 40.0)
        self.surf.blit(text, text_rect)
        if mode == "rgb_array":
            return self._create_image_array(self.surf, (car_racing.VIDEO_W, car_racing.VIDEO_H))
        if mode == "state_pixels":
            return self._create_image_array(self.surf, (car_racing.STATE_W, car_racing.STATE_H))
        return self.isopen

    def _road_arrays(self) -> tuple[np.ndarray, list]:
        """The road's quads (N, 4, 2) and colour objects, rebuilt when `reset` makes a new track."""
        if self._road_source is not self.road_poly:
            self._road_vertices = np.array([poly for poly, _ in self.road_poly], np.float64).reshape(-1, 4, 2)
            self._road_colors = [color for _, color in self.road_poly]  # a tile's colour changes when visited
            self._road_source = self.road_poly
        return self._road_vertices, self._road_colors

    def _render_road(self, zoom, translation, angle):
        bounds, margin = car_racing.PLAYFIELD, car_racing.MAX_SHAPE_DIM
        field = [(bounds, bounds), (bounds, -bounds), (-bounds, -bounds), (-bounds, bounds)]
        self._draw_colored_polygon(self.surf, field, self.bg_color, zoom, translation, angle, clip=False)
        cos, sin = pygame.math.Vector2(1.0, 0.0).rotate_rad(angle)
        road, road_colors = self._road_arrays()
        for quads, colors in ((self._GRASS, None), (road, road_colors)):
            if not len(quads):
                continue
            x, y = quads[..., 0], quads[..., 1]
            screen_x = (cos * x - sin * y) * zoom + translation[0]
            screen_y = (sin * x + cos * y) * zoom + translation[1]
            inside = ((-margin <= screen_x) & (screen_x <= car_racing.WINDOW_W + margin)
                      & (-margin <= screen_y) & (screen_y <= car_racing.WINDOW_H + margin)).any(axis=1)
            points = np.stack([screen_x, screen_y], axis=-1)
            for index in np.flatnonzero(inside):
                poly = [tuple(point) for point in points[index].tolist()]
                color = self.grass_color if colors is None else [int(c) for c in colors[index]]
                gfxdraw.aapolygon(self.surf, poly, color)
                gfxdraw.filled_polygon(self.surf, poly, color)


def make_fast_carracing(**kwargs) -> gym.Env:
    """`gym.make("CarRacing-v3", **kwargs)` with the vectorised road renderer: the same spec, so the same
    wrappers and 1,000-step limit."""
    spec = dataclasses.replace(gym.spec(STOCK_ID), entry_point=FastRoadCarRacing)
    return gym.make(spec, **kwargs)
