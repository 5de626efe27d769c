"""The loss chart: braille curves of a run's metrics (raw faint, EMA-smoothed bright), y-axis ticks, log-y,
an optional overlay of another run. Redrawn with the frame after new points arrive (refreshes coalesce), never
per point.

The drawing (the chart package, with numpy) loads with the first metrics: the dashboard's first frame does without it.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ..metric_names import LOSS_NAMES
from .palette import COMPARE_VARIABLE, LR_VARIABLE, SERIES_VARIABLES, theme_colour

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ..chart.series import Columns, Point, Series


def _series() -> ModuleType:
    from ..chart import series

    return series


def _draw() -> ModuleType:
    from ..chart import draw

    return draw


WAITING = "waiting for metrics…"
"""What the chart says while the selected run has sent no metrics yet."""


def resume_steps(steps: list[int], attempts: list[int]) -> list[int]:
    """Where a series passes to a later attempt: the first step of each."""
    return [step for i, step in enumerate(steps) if i and attempts[i] > attempts[i - 1]]


def idle_for(status: str | None, is_final: bool) -> str:
    """What the chart says while the selected run has no curve: waiting while it may still send metrics, else
    that it ended without any (a failed run said "waiting for metrics…")."""
    if status is None or not is_final:
        return WAITING
    return f"No metrics: the run {status} without printing any (its events and logs say why)."


def no_runs(provider: str) -> str:
    """What the chart says before the first run, by the default provider."""
    if provider == "local":
        return "No runs yet. Press n to launch one: the demo dataset and trainer are ready, on this machine (free)."
    return "No runs yet. Press n to launch one: pick GPU types by price and stock; the demo dataset is ready."


class LossChart(Widget):
    """Curves of the selected run's loss-like metrics."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; }
    """

    log_y: reactive[bool] = reactive(False)
    """Plot the y axis on a log scale."""
    smoothing: reactive[float] = reactive(0.6)
    """TensorBoard-style EMA weight in [0, 0.99]; 0 draws the raw curve only."""
    by_time: reactive[bool] = reactive(False)
    """x axis by wall time instead of step."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._colours: tuple[tuple[str, ...], str, str] | None = None
        """Series, comparison and learning-rate colours from the theme (the drawing's defaults until mounted)."""
        self.series: dict[str, Series] = {}
        self.compare: dict[str, Series] = {}
        self.compare_name = ""
        self._cache_key: tuple[object, ...] | None = None
        self._cache: Text | None = None
        self._version = 0
        self.idle_text = WAITING
        """What it says while it has no curve to draw."""
        self.resumes: list[int] = []
        """Steps where a later attempt (a new pod, --retries) took over the run's curve."""
        self.resume_pending = False
        """A new attempt was announced: the first live points after it mark where it resumed."""

    def on_mount(self) -> None:
        self.border_title = "loss"
        self._take_theme()
        self.app.theme_changed_signal.subscribe(self, lambda _: self._take_theme())

    def _take_theme(self) -> None:
        self._colours = (tuple(theme_colour(self.app, v) for v in SERIES_VARIABLES),
                         theme_colour(self.app, COMPARE_VARIABLE), theme_colour(self.app, LR_VARIABLE))
        self.mark_dirty()

    def mark_dirty(self) -> None:
        """Redraw with the next frame (Textual coalesces every refresh asked for before it into one)."""
        self._version += 1
        self.refresh()

    def watch_log_y(self) -> None:
        self.mark_dirty()

    def watch_smoothing(self) -> None:
        self.mark_dirty()

    def watch_by_time(self) -> None:
        self.mark_dirty()

    def say_idle(self, text: str) -> None:
        """What to say while there is no curve (no run yet, or none of its metrics)."""
        if text != self.idle_text:
            self.idle_text = text
            self.mark_dirty()

    def clear(self) -> None:
        """Forget the shown run."""
        self.series.clear()
        self.mark_dirty()

    def set_series(self, series: Mapping[str, Columns], resumes: list[int] | None = None) -> None:
        """Replace all series (a newly selected run): each metric's columns by name (a metrics page's series);
        the steps its later attempts resumed at."""
        self.series = _series().build_series(series)
        self.resumes = list(resumes or [])
        self.resume_pending = False
        self.mark_dirty()

    def add_points(self, points: Iterable[Point], compare: bool = False) -> None:
        """Append live points (the feed's) to the run's series, or to the overlaid run's."""
        target = self.compare if compare else self.series
        points = list(points)
        if self.resume_pending and not compare:  # the new pod's first loss points
            losses = [p.step for p in points if p.name in LOSS_NAMES]
            if losses:
                self.resumes.append(min(losses))
                self.resume_pending = False
        for name, named in _series().by_name(points).items():
            target.setdefault(name, _series().Series()).add(named)
        self.mark_dirty()

    def set_compare(self, name: str, series: Mapping[str, Columns]) -> None:
        """Overlay another run's loss (empty name clears it)."""
        self.compare_name = name
        self.compare = _series().build_series(series) if series else {}  # none: numpy need not load for it
        self.mark_dirty()

    def shown_names(self) -> list[str]:
        """Loss-like metrics first; any other metric when the run has no loss."""
        names = [n for n in LOSS_NAMES if n in self.series]
        if not names:
            names = sorted(n for n in self.series if n not in ("lr", "learning_rate", "epoch"))[:2]
        return names

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        key = (width, height, self._version, self.log_y, self.smoothing, self.by_time)
        if key != self._cache_key or self._cache is None:
            self._cache = self.draw(width, height)
            self._cache_key = key
        return self._cache

    def draw(self, width: int, height: int) -> Text:
        """The whole chart as text (y labels, braille plot, legend)."""
        names = self.shown_names()
        if not names or width < 12 or height < 3:
            return Text(self.idle_text, style="dim")
        draw = _draw()
        colours = draw.Colours() if self._colours is None else draw.Colours(*self._colours)
        view = draw.ChartView(self.series, names, self.compare, self.compare_name, self.log_y, self.smoothing,
                              self.by_time, colours, self.resumes)
        return draw.draw_chart(view, width, height)
