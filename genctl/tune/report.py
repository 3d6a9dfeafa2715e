"""What a tune shows and keeps: the Pareto table, its JSON records, and the manifest record.

``write_tuned`` sets the chosen controls as the bundle's sampler defaults (``manifest["sampler"]
["defaults"]``: ``generate``, ``bench``, ``serve`` and the Python API take unset controls from there)
and adds ``manifest["tuned"]``: date, criterion, reference, chosen settings (backend, precision and
batch are advice: they are options of each command), the defaults before, and the whole table. The
manifest is written atomically (temp file + rename) from a copy, so a failed write or an interrupt
leaves it as it was; the manifest hashes the files it lists, not itself, so the bundle still verifies.
"""
from __future__ import annotations

import copy
import datetime
from typing import Any

from rich import box
from rich.table import Table

from genctl.tune.search import TuneResult, pareto, settings_json


def records(result: TuneResult) -> list[dict[str, Any]]:
    """One JSON record per candidate, in table order (the reference first, then by samples/s)."""
    front = {id(c) for c in pareto(result.candidates)}
    ref = result.reference
    out = []
    for c in _ordered(result):
        acc = c.stats.accuracy
        ref_acc = result.reference_at.get(c.stats.rounds, ref.stats.accuracy)  # the reference on the same seeds
        out.append({**settings_json(c), "label": c.label(), "reference": c.reference, "front": id(c) in front,
                    "chosen": c is result.chosen, "status": c.status, "note": c.note,
                    "stderr": c.stats.stderr() if c.stats.samples else None,
                    "delta_points": None if acc is None or ref_acc is None else 100 * (acc - ref_acc),
                    "same_seeds_as_reference": bool(c.stats.samples) and c.stats.per_class == ref.stats.per_class})
    return out


def _ordered(result: TuneResult) -> list:
    rest = [c for c in result.candidates if not c.reference]
    rest.sort(key=lambda c: (c.samples_per_s is None, -(c.samples_per_s or 0.0)))
    return [result.reference, *rest]


def tune_table(result: TuneResult, title: str, *, limit: int = 40) -> Table:
    """Accuracy, diversity, samples/s, p50 per candidate; ``*`` marks the Pareto front, ``>`` the choice."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAVY)
    for col in ("", "backend", "prec", "batch", "controls", "accuracy %", "± se", "Δ ref", "diversity", "samples/s", "p50 ms", "n",
                "status"):
        table.add_column(col, justify="left" if col in ("backend", "controls", "status", "prec") else "right", no_wrap=True)
    rows = records(result)
    shown = [r for r in rows if r["samples"]][:limit]
    for r in shown:
        mark = (">" if r["chosen"] else " ") + ("*" if r["front"] else " ")
        status = "reference" if r["reference"] else r["status"]
        style = "bold green" if r["chosen"] else ("bold" if r["front"] else ("dim" if r["status"] != "measured" else None))
        table.add_row(mark, r["backend"], r["precision"], str(r["batch"]), r["label"], _pct(r["accuracy"]), _pct(r["stderr"]),
                      "" if r["delta_points"] is None else f"{r['delta_points']:+.1f}",
                      "" if r["diversity"] is None else f"{r['diversity']:.3f}",
                      "" if r["samples_per_s"] is None else f"{r['samples_per_s']:,.1f}",
                      "" if r["p50_ms"] is None else f"{r['p50_ms']:.2f}", str(r["samples"]), status, style=style)
    unmeasured = len(rows) - len([r for r in rows if r["samples"]])
    hidden = len([r for r in rows if r["samples"]]) - len(shown)
    notes = [f"{len(rows)} candidates", f"{result.rounds} rounds", f"{result.elapsed_s:.1f} s of {result.budget_s:g} s"]
    if unmeasured:
        notes.append(f"{unmeasured} not measured (budget)")
    if hidden:
        notes.append(f"{hidden} more in --json")
    table.caption = ("> chosen, * Pareto front (accuracy vs samples/s); " + result.criterion.describe() + "; " + ", ".join(notes))
    table.caption_justify = "left"
    return table


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def tuned_record(result: TuneResult, *, date: str | None = None) -> dict[str, Any]:
    ref, chosen = result.reference, result.chosen
    return {"date": date or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "criterion": result.criterion.to_json(), "reference": settings_json(ref),
            "chosen": None if chosen is None else settings_json(chosen),
            "speedup": None if chosen is None or not ref.samples_per_s else chosen.samples_per_s / ref.samples_per_s,
            "previous_defaults": dict(result.bundle.sampler.get("defaults", {})),
            "evaluator": result.evaluator, "seed": result.seed, "budget_s": result.budget_s,
            "elapsed_s": round(result.elapsed_s, 2), "rounds": result.rounds, "table": records(result)}


def write_tuned(result: TuneResult, *, date: str | None = None) -> dict[str, Any]:
    """Record the choice in the bundle's manifest (atomically); returns the ``tuned`` record."""
    from genctl.bundle import Bundle
    from genctl.errors import GenctlError

    if result.chosen is None:
        raise GenctlError(f"genctl tune of bundle '{result.bundle.path}'", got="no candidate that meets the criterion",
                          expected=result.criterion.describe(), fix="loosen --min-accuracy or --max-drop; the manifest is unchanged")
    bundle = Bundle.load(result.bundle.path)  # the manifest as it is on disk now, verified
    manifest = copy.deepcopy(bundle.manifest)
    record = tuned_record(result, date=date)
    manifest["sampler"].setdefault("defaults", {}).update(result.chosen.controls)
    manifest["tuned"] = record
    bundle.manifest = manifest
    bundle.save_manifest()
    return record


def describe_tuned(record: dict[str, Any]) -> str:
    """One line for ``genctl inspect``: when, the criterion, reference -> chosen."""
    def side(s: dict | None) -> str:
        if not s:
            return "none"
        controls = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.get("controls", {}).items())
        acc = "?" if s.get("accuracy") is None else f"{100 * s['accuracy']:.1f}%"
        per_s = "?" if s.get("samples_per_s") is None else f"{s['samples_per_s']:,.1f}/s"
        return f"{s['backend']}:{s['precision']} batch {s['batch']} {controls or 'defaults'} ({acc}, {per_s})"

    crit = record.get("criterion", {})
    what = f"max drop {crit['max_drop']:g} points" if "max_drop" in crit else f"min accuracy {crit.get('min_accuracy', '?')}%"
    speed = f", {record['speedup']:.2f}x" if record.get("speedup") else ""
    return (f"{record.get('date', '?')}: {side(record.get('chosen'))}{speed} vs reference {side(record.get('reference'))}; "
            f"{what}; {len(record.get('table', []))} candidates")
