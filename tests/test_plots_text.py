"""The token-highlighting figure and HTML view: colours follow the values, bad input is refused."""

import re

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_rgb

import xaijax as xj
from xaijax import plots
from xaijax.core.explanation import Explanation

matplotlib.use("Agg")


def _span_colours(html):
    return [tuple(int(c) for c in m) for m in re.findall(r"rgb\((\d+),(\d+),(\d+)\)", html)]


def test_html_colours_scale_with_the_values_and_escape_tokens():
    html = plots.text_html([1.0, -0.5, 0.0, 2.0], ["good", "<not>", "a", "[PAD]"])
    # "[PAD]" is not drawn and does not set the scale: the largest shown |value| (1.0) does.
    colours = _span_colours(html)
    assert len(colours) == 3
    pos = tuple(round(255 * c) for c in to_rgb("#d62728"))
    assert colours[2] == (255, 255, 255)  # zero is white
    assert "&lt;not&gt;" in html and "<not>" not in html
    assert 'title="-0.5"' in html and 'title="1"' in html
    # -0.5 of a scale of 1.0 is half of the blue.
    blue = np.array(to_rgb("#1f77b4"))
    assert colours[1] == tuple(round(255 * c) for c in (0.5 + 0.5 * blue))
    assert colours[0] == pos


def test_figure_draws_one_box_per_shown_token_in_its_colour():
    fig = plots.text(np.array([[3.0, -3.0, 1.5]]), [["yes", "no", "maybe"]], title="t")
    texts = [t for t in fig.axes[0].texts if t.get_text() in ("yes", "no", "maybe")]
    assert [t.get_text() for t in texts] == ["yes", "no", "maybe"]
    colours = [np.array(t.get_bbox_patch().get_facecolor()[:3]) for t in texts]
    np.testing.assert_allclose(colours[0], to_rgb("#d62728"), atol=1e-6)
    np.testing.assert_allclose(colours[1], to_rgb("#1f77b4"), atol=1e-6)
    np.testing.assert_allclose(colours[2], 0.5 + 0.5 * np.array(to_rgb("#d62728")), atol=1e-6)


def test_explanation_with_outputs_and_several_instances():
    values = np.zeros((2, 3, 2))
    values[0, 1, 1] = 1.0
    exp = Explanation(
        values=values, base_values=np.zeros((2, 2)), data=np.zeros((2, 3)), output_names=("a", "b")
    )
    html = plots.text_html(exp, [["a", "b", "c"], ["d", "e"]], targets=1)
    assert html.count("<p>") == 2
    assert _span_colours(html)[1] == tuple(round(255 * c) for c in to_rgb("#d62728"))
    fig = plots.text(exp, [["a", "b", "c"], ["d", "e"]], targets=1)
    assert len(fig.axes[0].texts) == 5


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="tokens"):
        plots.text([1.0, 2.0], [["a"], ["b"]])
    with pytest.raises(ValueError, match="tokens"):
        plots.text_html([1.0], ["a", "b"])
    with pytest.raises(ValueError, match="values"):
        plots.text(np.zeros((1, 2, 3, 4)), ["a"])
    with pytest.raises(ValueError, match="finite"):
        plots.text_html([np.nan], ["a"])
    assert xj.plots.text is plots.text
