"""The demo's ``index.html``: numbers as tables, figures under captions that say what they show.

The page is self-contained apart from the PNGs beside it. Each figure comes with a caption and a
section (``results["figures"]``, written by the demo as it saves them); a figure without one is
still shown, captioned by its name. Every image links to itself at full size, so the wide
comparison grids can be zoomed in the browser.
"""

from __future__ import annotations

import html
import os

__all__ = ["write_report", "SECTIONS"]

# results key -> heading; the order of the page.
SECTIONS = {
    "breast_cancer": "Breast cancer: an MLP classifier on 30 tabular features",
    "diabetes": "Diabetes: sampling estimators against exact Shapley values",
    "host_linear_model": "A scikit-learn model on the host: Kernel SHAP against Linear SHAP",
    "synthetic_shapes": "Synthetic shapes: attribution maps against ground-truth masks",
    "sentiment_text": "Sentiment sentences: LIME on a scikit-learn text classifier",
}

_SCORE_COLUMNS = {
    "pointing_game": "pointing game (higher better)",
    "energy_in_mask": "energy in mask (higher better)",
    "deletion_auc": "deletion AUC (lower better)",
    "insertion_auc": "insertion AUC (higher better)",
}

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
     line-height:1.4;color:#222}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 1em} td,th{border:1px solid #ccc;padding:3px 8px;
     text-align:left;vertical-align:top} th{background:#f4f4f4} td.num{text-align:right;
     font-variant-numeric:tabular-nums}
figure{display:inline-block;vertical-align:top;margin:.5em 1em 1em 0;max-width:520px}
figure.wide{display:block;max-width:100%} img{max-width:100%;border:1px solid #eee}
figcaption,.caption{font-size:.9em;color:#444;margin-top:.3em}
"""


def _number(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        # One style per column: fixed 3 decimals where that keeps 3 significant digits.
        if v == 0.0:
            return "0"
        if abs(v) < 0.01 or abs(v) >= 1e5:
            return f"{v:.3g}"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return html.escape(str(v))


def _cell(v) -> str:
    if isinstance(v, dict):
        return _table(v)
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, str) and " " in x for x in v):  # sentences: one per line
            return "<br>".join(html.escape(str(x)) for x in v)
        return html.escape(", ".join(str(x) for x in v))
    cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    return f"<td{cls}>{_number(v)}</td>"


def _table(d: dict, header: tuple[str, str] | None = None) -> str:
    """A two-column table of a dict; nested dicts become nested tables."""
    rows = []
    if header:
        rows.append(f"<tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>")
    for k, v in d.items():
        name = html.escape(str(k).replace("_", " "))
        if isinstance(v, dict):
            rows.append(f"<tr><td>{name}</td><td>{_table(v)}</td></tr>")
        elif isinstance(v, (list, tuple)):
            rows.append(f"<tr><td>{name}</td><td>{_cell(v)}</td></tr>")
        else:
            rows.append(f"<tr><td>{name}</td>{_cell(v)}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _scores_table(scores: dict) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _SCORE_COLUMNS.values())
    rows = []
    for method, sc in scores.items():
        cells = "".join(_cell(sc.get(k, "")) for k in _SCORE_COLUMNS)
        rows.append(f"<tr><td>{html.escape(method)}</td>{cells}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def _figure(entry: dict) -> str:
    name = html.escape(entry["file"])
    caption = html.escape(entry.get("caption") or entry["file"])
    wide = ' class="wide"' if entry.get("wide") else ""
    return (
        f'<figure{wide}><a href="{name}" title="open full size"><img src="{name}" alt="{caption}">'
        f"</a><figcaption>{caption}</figcaption></figure>"
    )


def _view(out: str, entry: dict) -> str:
    """An HTML fragment the demo wrote (a text view), inlined under its caption."""
    path = os.path.join(out, entry["file"])
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        fragment = fh.read()
    caption = html.escape(entry.get("caption") or entry["file"])
    return f'<div class="view">{fragment}<p class="caption">{caption}</p></div>'


def write_report(out: str, results: dict) -> str:
    """Write ``out/index.html`` from the demo's ``results``; return its path.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> path = write_report(d, {"seed": 0, "quick": True, "versions": {"jax": "0"}})
        >>> "<table>" in open(path).read()
        True
    """
    figures = list(results.get("figures", []))
    known = {f["file"] for f in figures}
    on_disk = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    figures += [{"file": f, "section": None} for f in on_disk if f not in known]
    settings = {"seed": results.get("seed"), "quick run": results.get("quick")}
    settings.update(results.get("settings", {}))
    parts = [
        "<h1>xaijax demo</h1>",
        "<p>Small models trained on embedded data, explained by every family of methods. "
        "All numbers are in <a href='results.json'>results.json</a>; click a figure to open "
        "it at full size.</p>",
        "<h2>Settings and versions</h2>",
        '<div style="display:flex;gap:2em;flex-wrap:wrap">',
        _table(settings, ("setting", "value")),
        _table(results.get("versions", {}), ("package", "version")),
        "</div>",
    ]
    for key, heading in SECTIONS.items():
        section = results.get(key)
        shown = [f for f in figures if f.get("section") == key]
        if section is None and not shown:
            continue
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(section, dict):
            numbers = {k: v for k, v in section.items() if k != "scores"}
            parts.append(_table(numbers, ("quantity", "value")))
            if "scores" in section:
                parts.append("<h3>Localisation and faithfulness per method</h3>")
                parts.append(_scores_table(section["scores"]))
        parts += [_figure(f) for f in shown]
        parts += [_view(out, v) for v in results.get("views", []) if v.get("section") == key]
    other = [f for f in figures if f.get("section") not in SECTIONS]
    if other:
        parts.append("<h2>Other figures</h2>")
        parts += [_figure(f) for f in other]
    if results.get("timings_s"):
        parts.append("<h2>Timings (seconds, including compilation)</h2>")
        parts.append(_table(results["timings_s"], ("step", "seconds")))
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>xaijax demo</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    path = os.path.join(out, "index.html")
    with open(path, "w") as fh:
        fh.write(page)
    return path
