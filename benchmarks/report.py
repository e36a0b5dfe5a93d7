"""Turn the run's `Section`s into `latest.md`, `latest.json` and the chart `latest.png`.

`latest.md` opens with the machine the numbers come from and one table of every target
with its verdict, then each section's own table under its title. `latest.json` holds the
same metadata and every section's raw data. `latest.png` draws one horizontal-bar panel
per distinct `Bar.panel`, sessionguard's bars in one colour and the peers' in another.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .checkout import Checkout
from .section import Bar, Section

__all__ = ["write_json", "write_report"]

SESSIONGUARD_COLOUR = "#1f6fb4"
PEER_COLOUR = "#a9a9a9"


def write_report(sections: Sequence[Section], out_dir: Path, meta: Mapping[str, Any]) -> str:
    """Write latest.md, latest.json and latest.png into `out_dir`; return the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(sections, meta)
    _write(out_dir / "latest.md", markdown)
    report = {
        "meta": dict(meta),
        "sections": [
            {
                "key": section.key,
                "title": section.title,
                "data": section.data,
                "targets": [
                    {"description": t.description, "measured": t.measured, "met": t.met}
                    for t in section.targets
                ],
            }
            for section in sections
        ],
    }
    write_json(out_dir / "latest.json", report)
    render_chart(sections, meta, out_dir / "latest.png")
    return markdown


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON, NaN and infinities as `null` (which JSON can hold)."""
    _write(path, json.dumps(_finite(data), indent=2, ensure_ascii=False, default=str) + "\n")


def _write(path: Path, text: str) -> None:
    """Write atomically, so that a reader never sees half a results file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- Markdown -----------------------------------------------------------------------------


def render_markdown(sections: Sequence[Section], meta: Mapping[str, Any]) -> str:
    lines = [f"# sessionguard benchmarks, {_date(meta)}", "", *_machine_lines(meta), ""]
    targets = [(section, target) for section in sections for target in section.targets]
    if targets:
        met = sum(target.met for _, target in targets)
        lines += [
            "## Targets",
            "",
            f"{met} of {len(targets)} met.",
            "",
            "| section | target | measured | result |",
            "|---|---|---|---|",
        ]
        for section, target in targets:
            verdict = "met" if target.met else "**NOT MET**"
            cells = (section.title, target.description, target.measured, verdict)
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines.append("")
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown.rstrip(), ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _date(meta: Mapping[str, Any]) -> str:
    started = meta.get("started_at")
    if isinstance(started, str) and started:
        return started.replace("T", " ")
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _machine_lines(meta: Mapping[str, Any]) -> list[str]:
    machine = meta.get("machine", meta)
    if not isinstance(machine, Mapping):
        return []
    parts = []
    if machine.get("cpu_count") is not None:
        usable = machine.get("cpus_usable")
        extra = f" ({usable} usable)" if usable not in (None, machine["cpu_count"]) else ""
        parts.append(f"{machine['cpu_count']} CPUs{extra}")
    load = machine.get("load_average")
    if isinstance(load, Sequence) and load:
        parts.append("load average " + " / ".join(f"{value:.2f}" for value in load))
    if machine.get("python"):
        parts.append(f"{machine.get('implementation', 'Python')} {machine['python']}")
    if machine.get("platform"):
        parts.append(str(machine["platform"]))
    checkout = _checkout(meta)
    if checkout is not None:
        parts.append(checkout.describe())
    lines = ["Machine: " + ", ".join(parts) + "." if parts else ""]
    if checkout is not None and checkout.dirty:
        lines.append(
            f"**Not HEAD's figures**: the work tree had changes not committed to "
            f"{checkout.commit} when this ran."
        )
    packages = machine.get("packages")
    if isinstance(packages, Mapping):
        installed = [f"{name} {version}" for name, version in packages.items() if version]
        if installed:
            lines.append("Packages: " + ", ".join(installed) + ".")
    for key in ("duration_s", "quick", "parameters"):
        if key in meta and meta[key] is not None:
            lines.append(f"{key}: {json.dumps(_finite(meta[key]), default=str)}")
    return [line for line in lines if line] or []


def _checkout(meta: Mapping[str, Any]) -> Checkout | None:
    """The commit the figures were measured on, as `benchmarks.checkout` recorded it."""
    machine = meta.get("machine", meta)
    if not isinstance(machine, Mapping) or not machine.get("commit"):
        return None
    return Checkout(str(machine["commit"]), dirty=bool(machine.get("dirty")))


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities turned into `None`, which JSON can hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# -- chart -------------------------------------------------------------------------------


def _panels(sections: Sequence[Section]) -> dict[str, list[Bar]]:
    panels: dict[str, list[Bar]] = {}
    for section in sections:
        for bar in section.bars:
            panels.setdefault(bar.panel, []).append(bar)
    return panels


def _label(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_chart(sections: Sequence[Section], meta: Mapping[str, Any], path: Path) -> None:
    """Draw every panel as horizontal bars into a PNG at `path` (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels = _panels(sections)
    if not panels:
        figure = plt.figure(figsize=(8, 2))
        figure.text(0.5, 0.5, "no results to chart", ha="center", va="center")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return
    columns = 1 if len(panels) < 3 else 2
    items = list(panels.items())
    rows = [items[i : i + columns] for i in range(0, len(items), columns)]
    heights = [max(len(bars) for _, bars in row) * 0.32 + 0.9 for row in rows]
    figure, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(7.5 * columns, sum(heights) + 1.2),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for row_index, row in enumerate(rows):
        for column in range(columns):
            ax = axes[row_index][column]
            if column >= len(row):
                ax.axis("off")
                continue
            title, bars = row[column]
            _draw_panel(ax, title, bars)
    figure.legend(
        handles=[
            Patch(color=SESSIONGUARD_COLOUR, label="sessionguard"),
            Patch(color=PEER_COLOUR, label="peers and baselines"),
        ],
        loc="upper right",
        ncol=2,
        frameon=False,
    )
    figure.suptitle(f"sessionguard benchmarks, {_date(meta)}", x=0.01, ha="left", fontsize=13)
    checkout = _checkout(meta)
    if checkout is not None:  # a footer, so the chart never goes about without it
        figure.text(0.01, 0.005, checkout.describe(), ha="left", va="bottom", fontsize=9)
    figure.tight_layout(rect=(0, 0.02, 1, 0.98))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _draw_panel(ax: Any, title: str, bars: Sequence[Bar]) -> None:
    values = [bar.value if math.isfinite(bar.value) else 0.0 for bar in bars]
    positions = range(len(bars))
    colours = [SESSIONGUARD_COLOUR if bar.is_sessionguard else PEER_COLOUR for bar in bars]
    ax.barh(positions, values, color=colours, height=0.7)
    ax.set_yticks(list(positions), [bar.label for bar in bars], fontsize=8.5)
    for tick, bar in zip(ax.get_yticklabels(), bars, strict=True):
        if bar.is_sessionguard:
            tick.set_fontweight("bold")
    ax.invert_yaxis()  # first bar on top, as in the tables
    ax.set_title(title, fontsize=10, loc="left")
    top = max(values, default=0.0) or 1.0
    ax.set_xlim(0, top * 1.18)
    for position, bar, value in zip(positions, bars, values, strict=True):
        ax.text(value + top * 0.01, position, _label(bar.value), va="center", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
