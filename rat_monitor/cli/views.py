"""What the commands show, as rich renderables (tables, the live view); the commands print them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich import box
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..classify.familiarity import unfamiliar_advice
from ..pipeline import Observer
from ..types import ACTION_UNITS, AU_FIELDS, MinuteSummary

LEVEL_STYLE = {"none": "green", "pain": "yellow", "moderate": "yellow", "severe": "bold red", "unknown": "dim"}


def fmt(v, digits=2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


COMPACT = ("animal", "min", "face%", "scored", "P(pain)", "smooth", "level", "alert", "RGS")  # what fits in 80 columns


def timeline_table(rows: list[MinuteSummary], title: str = "Pain timeline", last: int | None = None,
                   caveat: str = "", action_units: bool = False, compact: bool = False) -> Table:
    """The per-minute table; with an AU-capable model also the RGS score and the four action units
    (orbital/nose/ears/whiskers, 0..2), blank for minutes without a scored face. compact: only the columns of
    COMPACT, for terminals under 100 columns."""
    table = Table(title=title, caption=caveat or None, caption_style="dim", box=box.SIMPLE_HEAD, pad_edge=False)
    several = any(m.animal for m in rows)  # a run of several animals: whose minute each row is
    cols = ["animal"] * several + ["min", "start", "frames", "drop", "face%", "scored", "P(pain)", "smooth", "level",
                                   "alert"]
    cols += ["RGS", "orb/nose/ear/whisk"] if action_units else []
    keep = [c in COMPACT or not compact for c in cols]
    for col, kept in zip(cols, keep):
        if kept:
            table.add_column(col, justify="right" if col not in ("animal", "start", "level") else "left", no_wrap=True)
    for m in rows[-last:] if last else rows:
        cov = 100.0 * m.face_frames / m.frames if m.frames else 0.0
        start = m.start_time[11:19] if m.start_time else f"{m.start_s / 60:.0f}:00"
        level = f"[{LEVEL_STYLE[m.pain_level]}]{m.pain_level}[/]" + (" (refused)" if m.status == "unfamiliar" else "")
        cells = [escape(m.animal)] * several + [
            str(m.minute), start, str(m.frames), str(m.dropped_frames), f"{cov:.0f}", str(m.scored_frames),
            fmt(m.pain_prob), fmt(m.pain_prob_smoothed), level, "[bold red]ALERT[/]" if m.alert else ""]
        if action_units:
            au = m.action_units
            cells += [fmt(au["rgs"]) if au else "", " ".join(f"{au[k]:.1f}" for k in AU_FIELDS[:-1]) if au else ""]
        table.add_row(*(c for c, kept in zip(cells, keep) if kept))
    return table


class LiveView:
    """The watch view: the current minute filling up, the last minutes, fps and dropped frames, refusals and
    alerts. Its observer feeds it from the pipeline; alert(row) is called as an alert is raised."""

    def __init__(self, caveat: str, alert: Callable[[MinuteSummary], None], action_units: bool = False):
        view = self

        class _Obs(Observer):
            def frame(self, index, t_s, n_faces, stats):
                view.t_s, view.stats, view.faces = t_s, stats, n_faces
                view.refresh()

            def scored(self, frames):
                refused = sum(f.prediction.refused for f in frames)
                view.scored_now += len(frames) - refused
                view.accepted += len(frames) - refused
                view.refused += refused

            def minute(self, row):
                view.rows.append(row)
                view.scored_now = 0
                if row.alert_event == "raised":
                    view.alerts.append(row)
                    alert(row)
                view.refresh()

        self.observer = _Obs()
        self.caveat = caveat
        self.action_units = action_units
        self.rows, self.alerts = [], []
        self.t_s, self.stats, self.faces, self.scored_now = 0.0, {}, 0, 0
        self.accepted, self.refused = 0, 0
        self.live: Live | None = None

    def render(self, width: int | None = None):
        """The view for a terminal WIDTH columns wide (the live console's when shown): under 100 columns the
        table keeps its essential columns and the status line is short."""
        width = width or (self.live.console.width if self.live is not None else 120)
        compact = width < 100
        into = (self.t_s % 60) / 60
        cells = 16 if compact else 30
        bar = "█" * int(into * cells) + "·" * (cells - int(into * cells))
        dropped = sum(r.dropped_frames for r in self.rows if r.animal == self.rows[0].animal)  # once, not per animal
        head = (f"min {int(self.t_s // 60)} [{bar}] faces {self.faces} scored {self.scored_now} "
                f"fps {self.stats.get('fps', 0):.0f} dropped {dropped}" if compact else
                f"minute {int(self.t_s // 60)}  [{bar}]  faces now: {self.faces}  scored this minute: "
                f"{self.scored_now}  fps: {self.stats.get('fps', 0):.1f}  dropped: {dropped}")
        parts = [head]
        if not self.rows:
            parts.append(f"the first row appears when minute 0 closes, in {60 - self.t_s % 60:.0f} s")
        parts.append(timeline_table(self.rows, title="Last minutes", last=10, caveat=self.caveat,
                                    action_units=self.action_units, compact=compact))
        advice = unfamiliar_advice(self.refused, self.accepted)
        if advice:
            parts.append(f"[yellow]{advice}[/]")
        if self.alerts:
            a = self.alerts[-1]
            who = f"{escape(a.animal)}: " if a.animal else ""
            parts.append(f"[bold red]ALERT[/] {who}since minute {a.minute} (smoothed P(pain) "
                         f"{a.pain_prob_smoothed:.2f})")
        return Group(*parts)

    def refresh(self):
        if self.live is not None:
            self.live.update(self.render())


LEVEL_KEYS = ("minutes_pain", "minutes_moderate", "minutes_severe")


def batch_table(rows: list[dict], out_dir: Path) -> Table:
    table = Table(title=f"Batch summary ({out_dir / 'summary.csv'})", box=box.SIMPLE_HEAD)
    for col in ("video", "status", "minutes", "observed", "none", "pain", "moderate", "severe", "unknown", "refused",
                "alerts"):
        table.add_column(col, justify="left" if col in ("video", "status") else "right")
    from ..batch import animal_rows

    for r in (one for row in rows for one in animal_rows(row)):
        status = r["status"] if not r.get("error") else f"[red]{r['status']}[/]: {r['error'][:60]}"
        name = Path(r["video"]).name + (f" · {r['animal']}" if r.get("animal") else "")
        # "—": a level this run's model cannot give (a binary model has no moderate or severe)
        table.add_row(escape(name), status, *(str(r.get(k, "")) if r.get(k, "") != "" or k not in LEVEL_KEYS
                                                       else "—" for k in (
            "minutes", "minutes_observed", "minutes_none", "minutes_pain", "minutes_moderate", "minutes_severe",
            "minutes_unknown",
            "refused_crops", "alerts")))
    return table


def models_table(cards: list[dict], folder: Path) -> Table:
    table = Table(title=f"Models in {folder}")
    for col in ("name", "kind", "model", "task", "trained on", "metrics"):
        table.add_column(col)
    for card in cards:
        training = card.get("training", {})
        metrics = card.get("metrics", {})
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))
        shown += "".join(f"\n{k}: precision {v['precision']:.3f}, recall {v['recall']:.3f}" for k, v in metrics.items()
                         if isinstance(v, dict) and "recall" in v)  # a detector's figures per evaluation set
        table.add_row(card["name"], card.get("kind", ""), card.get("model", card.get("architecture", "")),
                      card.get("task", ""), ("[yellow]SYNTHETIC[/] " if card.get("synthetic") else "")
                      + str(training.get("description", "")), shown)
    return table


def loso_table(result: dict, model: str, task: str) -> Table:
    """Per held-out animal and pooled: accuracy, macro-F1, pain-F1, the share refused as unfamiliar and macro-F1
    over the crops kept."""
    table = Table(title=f"Leave-one-subject-out, {model}, {task}",
                  caption="refused: share of the held-out animal's crops the familiarity check refused; F1 accepted: "
                          "macro-F1 over the crops it kept (the other figures are over all crops)")
    for col in ("held out", "n", "accuracy", "macro F1", "pain F1", "refused", "F1 accepted", "train s"):
        table.add_column(col, justify="right")

    def refusal_cells(f: dict) -> list[str]:
        if "refused_share" not in f:
            return ["", ""]
        return [f"{f['refused_share']:.3f}", fmt(f["macro_f1_accepted"], 3)]

    for f in result["folds"]:
        table.add_row(f["subject"], str(f["n"]), f"{f['accuracy']:.3f}", f"{f['macro_f1']:.3f}",
                      f"{f['pain_f1']:.3f}", *refusal_cells(f), f"{f['train_s']:.1f}")
    p = result["pooled"]
    table.add_row("[bold]pooled", str(p["n"]), f"[bold]{p['accuracy']:.3f}", f"[bold]{p['macro_f1']:.3f}",
                  f"[bold]{p['pain_f1']:.3f}", *refusal_cells(p), f"{result['seconds']:.0f} total")
    return table


def au_table(result: dict) -> Table:
    """Per-AU agreement under LOSO: pooled over all held-out animals, and the worst animal's kappa."""
    table = Table(title="Action units, leave-one-subject-out (score = expected value; accuracy and kappa of the "
                        "rounded score)")
    for col in ("action unit", "n", "accuracy", "QWK", "MAE", "worst animal QWK"):
        table.add_column(col, justify="right")
    pooled = result["action_units"]
    for au in ACTION_UNITS:
        if au in pooled:
            a = pooled[au]
            worst = min((f["action_units"][au]["qwk"] for f in result["folds"] if au in f.get("action_units", {})),
                        default=float("nan"))
            table.add_row(au, str(a["n"]), f"{a['accuracy']:.3f}", f"[bold]{a['qwk']:.3f}", f"{a['mae']:.3f}",
                          f"{worst:.3f}")
    if "rgs" in pooled:
        r = pooled["rgs"]
        table.add_row("RGS (mean of 4)", str(r["n"]), "", f"ICC(2,1) [bold]{r['icc_2_1']:.3f}", f"{r['mae']:.3f}", "")
    return table


def sources_table(board, caveat: str = "") -> Table:
    """The terminal view of several sources: a row each (state, fps, frames, dropped, minute, last minute)."""
    table = Table(title="Sources", box=box.SIMPLE_HEAD, caption=caveat or None)
    for col in ("source", "state", "fps", "frames", "drop", "minute", "last", "P(pain)", "alert"):
        table.add_column(col, justify="left" if col in ("source", "state", "last") else "right")
    for b in board.sources.values():
        s = b.summary()
        last = s["last_minute"] or {}
        state = {"live": "[green]live[/]", "reconnecting": "[yellow]reconnecting[/]"}.get(s["state"], s["state"])
        table.add_row(s["name"], state, f"{s['fps']:.0f}", str(s["frames"]), str(s["dropped"]),
                      f"{s['minute']} ({s['seconds_into_minute']:.0f} s)", last.get("pain_level", "—"),
                      last.get("pain_prob") or "—", "[bold red]ALERT[/]" if s["alert"] else "")
    return table
