"""The registry of paper figures and tables, and the one loop that renders them.

A figure is registered where it is drawn, with its caption beside its code::

    @figure("l22_fig3", paper="Lowell 2022, Figure 3", caption="…",
            needs=needs(proj_runs, "no run has probe rows with proj_top and proj_bulk"))
    def l22_fig3(sel: list[RunData]) -> Figure:
        '''Lowell 2022, Figure 3 …'''

``needs`` picks what the figure draws from the runs (a list of runs, one run, a grouping) or
raises :class:`Missing` with the reason; the drawing function receives that selection and
returns a :class:`~matplotlib.figure.Figure`. The decorator turns it into a
:class:`FigureSpec` in :data:`FIGURES`: ``spec.needs(runs)`` is None or the reason,
``spec.draw(runs)`` the Figure, ``spec(runs, out)`` / ``spec.func(runs, out)`` writes
``out.png`` and ``out.pdf``. Tables (:func:`table`, :data:`TABLES`) return Markdown and may
take keyword options. :func:`render` draws a list of names into a folder for ``eoslab plot``
and ``eoslab report``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eoslab.plots._save import save_figure
from eoslab.plots.papers.runs import RunData

__all__ = [
    "FIGURES",
    "TABLES",
    "FigureSpec",
    "Missing",
    "TableSpec",
    "figure",
    "needs",
    "render",
    "render_all",
    "table",
]

Select = Callable[[list[RunData]], Any]


class Missing(ValueError):
    """The runs lack what a figure or table draws; the message says what is missing."""


def needs(select: Select, reason: str) -> Select:
    """A selection: ``select(runs)``, or :class:`Missing` (``reason``) when that is empty."""

    @functools.wraps(select)
    def pick(runs: list[RunData]) -> Any:
        chosen = select(runs)
        if chosen is None or (isinstance(chosen, (list, tuple, dict)) and not chosen):
            raise Missing(reason)
        return chosen

    return pick


def _reason(select: Select, runs: list[RunData]) -> str | None:
    try:
        select(runs)
    except Missing as err:
        return str(err)
    return None


@dataclass(frozen=True)
class FigureSpec:
    """One figure of a paper.

    Attributes:
        name: registry key (also the default file name).
        paper: the paper and figure it reproduces.
        caption: what is drawn.
        select: ``select(runs)``: what the figure draws, or :class:`Missing`.
        body: ``body(selection) -> Figure``.
        func: ``func(runs, out) -> [out.png, out.pdf]`` (the body's docstring).
    """

    name: str
    paper: str
    caption: str
    select: Select
    body: Callable[[Any], Any]
    func: Callable[[list[RunData], str | Path], list[Path]] = field(init=False, repr=False)

    def __post_init__(self):
        @functools.wraps(self.body)
        def func(runs: list[RunData], out: str | Path) -> list[Path]:
            return save_figure(self.draw(runs), Path(out))

        del func.__wrapped__  # its signature is (runs, out), not the body's
        object.__setattr__(self, "func", func)

    def needs(self, runs: list[RunData]) -> str | None:
        """None when the runs hold what the figure draws, else a short reason."""
        return _reason(self.select, runs)

    def draw(self, runs: list[RunData]):
        """The figure as a :class:`~matplotlib.figure.Figure`, unsaved.

        Raises:
            Missing: a ValueError with the reason, when the runs lack the data.
        """
        return self.body(self.select(runs))

    def __call__(self, runs: list[RunData], out: str | Path) -> list[Path]:
        """Draw the figure into ``out`` (suffix ignored); return the written paths."""
        return self.func(runs, out)


@dataclass(frozen=True)
class TableSpec:
    """One table of a paper; ``func(runs, **options)`` returns Markdown, ``needs`` as figures.

    Attributes:
        options: the names of the body's keyword-only options (e.g. ``min_time``).
    """

    name: str
    paper: str
    caption: str
    select: Select
    body: Callable[..., str]
    func: Callable[..., str] = field(init=False, repr=False)
    options: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        @functools.wraps(self.body)
        def func(runs: list[RunData], **options) -> str:
            return self.body(self.select(runs), **options)

        params = inspect.signature(self.body).parameters.values()
        kw_only = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        object.__setattr__(self, "func", func)
        object.__setattr__(self, "options", kw_only)

    def needs(self, runs: list[RunData]) -> str | None:
        """None when the runs hold what the table lists, else a short reason."""
        return _reason(self.select, runs)

    def __call__(self, runs: list[RunData], **options) -> str:
        """The table as Markdown; ``options`` go to the body (e.g. ``min_time`` of Table 1)."""
        return self.func(runs, **options)


FIGURES: dict[str, FigureSpec] = {}
"""Registry: name → :class:`FigureSpec` of every paper figure, in registration order."""

TABLES: dict[str, TableSpec] = {}
"""Registry: name → :class:`TableSpec` of every paper table, in registration order."""


def _check_new(name: str) -> None:
    if name in FIGURES or name in TABLES:
        raise ValueError(f"figure or table {name!r} is registered twice")


def figure(name: str, *, paper: str, caption: str, needs: Select):
    """Register ``body(selection) -> Figure`` as the figure ``name``; returns its spec."""

    def register(body: Callable[[Any], Any]) -> FigureSpec:
        _check_new(name)
        spec = FigureSpec(name, paper, caption, needs, body)
        FIGURES[name] = spec
        return spec

    return register


def table(name: str, *, paper: str, caption: str, needs: Select):
    """Register ``body(selection, **options) -> str`` as the table ``name``; returns its spec."""

    def register(body: Callable[..., str]) -> TableSpec:
        _check_new(name)
        spec = TableSpec(name, paper, caption, needs, body)
        TABLES[name] = spec
        return spec

    return register


def render(
    runs: list[RunData],
    names: Sequence[str] | None,
    out: str | Path,
    options: dict[str, Any] | None = None,
    *,
    keep_going: bool = False,
) -> list[tuple[str, list[Path] | str]]:
    """Draw figures and write tables (``NAME.md``) into ``out``, skipping what the runs lack.

    Args:
        runs: runs from :func:`~eoslab.plots.papers.load_runs`.
        names: figures and tables, in order (None: every figure, then every table).
        out: folder for ``NAME.png``, ``NAME.pdf`` and ``NAME.md`` (created).
        options: keyword options for the tables named (e.g. ``{"min_time": 3}``).
        keep_going: an exception while drawing becomes that entry's reason
            (``failed: …``) instead of propagating.

    Returns:
        Per name, in order: ``(name, written paths)`` or ``(name, reason it was skipped)``.

    Raises:
        KeyError: for an unknown name (before anything is drawn).
        ValueError: from a figure or table (e.g. a bad table option), unless ``keep_going``.
    """
    out = Path(out)
    wanted = list(names) if names is not None else [*FIGURES, *TABLES]
    unknown = [n for n in wanted if n not in FIGURES and n not in TABLES]
    if unknown:
        raise KeyError(f"unknown figure or table {unknown}; known: {[*FIGURES, *TABLES]}")
    done: list[tuple[str, list[Path] | str]] = []
    for name in wanted:
        spec: FigureSpec | TableSpec = FIGURES.get(name) or TABLES[name]
        reason = spec.needs(runs)
        if reason is not None:
            done.append((name, reason))
            continue
        try:
            if isinstance(spec, FigureSpec):
                files = spec(runs, out / name)
            else:
                text = spec(runs, **(options or {}))
                out.mkdir(parents=True, exist_ok=True)
                files = [out / f"{name}.md"]
                files[0].write_text(text)
        except Exception as err:
            if not keep_going:
                raise
            done.append((name, f"failed: {type(err).__name__}: {err}"))
            continue
        done.append((name, files))
    return done


def render_all(
    runs: list[RunData], out_dir: str | Path, names: Sequence[str] | None = None
) -> dict[str, list[Path] | str]:
    """:func:`render` as a dict: per name, the written paths or the reason it was skipped."""
    return dict(render(runs, names, out_dir))
