"""run.benchmark_web: the web page's dream steps a second, measured on a tiny exported Doom page.

A module of its own: measuring opens a page, and playwright's sync API cannot open one inside another
(tests/test_export_web.py keeps its page open for its whole module).
"""

import json

import pytest

from common.errors import UserError
from run.benchmark_web import TARGET_STEPS_PER_S, benchmark_web, page_steps_per_s
from tests.test_export_web import needs_browser


@needs_browser
def test_page_steps_per_s_measures_a_positive_rate_on_a_tiny_exported_doom_page(tmp_path):
    result = benchmark_web(tmp_path, seconds=1.0, hidden_size=16)  # benchmark_web's world, with a tiny M
    assert set(result) == {"web_page_steps_per_s", "web_page_target_steps_per_s"}, result
    assert result["web_page_steps_per_s"] > 0 and result["web_page_target_steps_per_s"] == TARGET_STEPS_PER_S == 30
    page = tmp_path / "web_world" / "web"
    model = json.loads((page / "model.json").read_text())
    assert (model["env"], model["z_size"], model["hidden_size"]) == ("doom", 64, 16)
    assert model["driver"]["kind"] == "controller"
    (page / "decoder.onnx").unlink()  # a page that fails is an error, not a rate
    with pytest.raises(UserError, match="the page failed"):
        page_steps_per_s(page, seconds=0.5)
