#!/usr/bin/env python3
"""Turns the raw logs of scripts/bench into the report: OUT.md, OUT.json, OUT-<area>.svg.

  scripts/bench_report.py --logs bench/results/DATE --out bench/results/DATE [--mode quick] [--commit SHA]

It reads the markdown tables each strata-bench-* program prints (`| a | b |` rows, cells like
"1.87 (1.80-1.95)" for median (min-max)) from LOGS/<area>.log, collects one measurement per
workload and program, compares strata with each peer against the targets of issue 12, and
writes the summary table, the peak RSS of every operation (the "### Peak RSS" tables), the
full tables, the measurements and one bar chart per area.
A log without results (the benchmark failed) leaves its area out, with a note, and makes the exit
status 1. (Some benchmarks exit 1 when their target is missed; that alone is not a failure here.)
"""
import argparse
import datetime
import html
import json
import re
from pathlib import Path

VALUE = re.compile(r"^\s*(-?[\d.]+)\s*(?:\(\s*(-?[\d.]+)\s*-\s*(-?[\d.]+)\s*\))?")


def parse_value(cell):
    """(median, min, max) from "1.87 (1.80-1.95)" or "1.87"; None for "n/a" and the like."""
    match = VALUE.match(cell)
    if not match:
        return None
    median = float(match.group(1))
    low = float(match.group(2)) if match.group(2) else median
    high = float(match.group(3)) if match.group(3) else median
    return median, low, high


def parse_tables(text):
    """Every markdown table of a log: {heading, header, rows}; heading is the last '#' line before it."""
    tables, heading, current = [], "", None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = [cell.strip() for cell in stripped[1:-1].split("|")]
            if current is None:
                current = {"heading": heading, "header": cells, "rows": []}
                tables.append(current)
            elif not all(set(cell) <= set("-: ") for cell in cells):
                current["rows"].append(cells)
            continue
        current = None
        if stripped.startswith("#"):
            heading = stripped
    return tables


def find_table(tables, first_column, must_contain, heading_start=None):
    for table in tables:
        if table["header"][0] != first_column or not any(must_contain in h for h in table["header"]):
            continue
        if heading_start and not table["heading"].startswith(heading_start):
            continue
        return table
    return None


def column(table, starts_with):
    for index, title in enumerate(table["header"]):
        if title.startswith(starts_with):
            return index
    raise KeyError(starts_with)


class Area:
    """The measurements and comparisons of one area."""

    def __init__(self, name, title, unit, higher_is_better=False):
        self.name, self.title, self.unit, self.higher_is_better = name, title, unit, higher_is_better
        self.measurements = []  # {workload, program, median, min, max}
        self.comparisons = []

    def measure(self, workload, program, cell):
        value = parse_value(cell)
        if value is None:
            return None
        median, low, high = value
        entry = {"workload": workload, "program": program, "median": median, "min": low, "max": high}
        self.measurements.append(entry)
        return entry

    def compare(self, workload, strata, peer, target=None, ratio_kind="speed-up"):
        """ratio_kind "speed-up": how many times faster strata is than the peer (peer time / strata
        time, or strata rate / peer rate), target a minimum. "cost": strata's time / the other's,
        target a maximum."""
        if strata is None or peer is None:
            return
        if ratio_kind == "speed-up":
            ratio = strata["median"] / peer["median"] if self.higher_is_better else peer["median"] / strata["median"]
            met = None if target is None else ratio >= target
        else:
            ratio = strata["median"] / peer["median"]
            met = None if target is None else ratio <= target
        self.comparisons.append({
            "area": self.name, "workload": workload, "strata": strata["program"], "peer": peer["program"],
            "strata_median": strata["median"], "peer_median": peer["median"], "unit": self.unit,
            "ratio_kind": ratio_kind, "ratio": round(ratio, 3), "target": target, "met": met,
        })


def pull_area(tables):
    area = Area("pull", "cold pull + unpack vs ctr (containerd)", "s")
    table = find_table(tables, "image", "ctr pull s")
    if table:
        for row in table["rows"]:
            workload = row[0]
            strata = area.measure(workload, "strata pull", row[column(table, "strata s")])
            ctr = area.measure(workload, "ctr images pull", row[column(table, "ctr pull s")])
            skopeo = area.measure(workload, "skopeo copy (fetch only)", row[column(table, "skopeo fetch s")])
            area.compare(workload, strata, ctr, 5.0)
            area.compare(workload, strata, skopeo)
    return area


def registry_area(tables, name, heading, target):
    area = Area(name, f"{name} vs skopeo copy", "s")
    table = find_table(tables, "image", "skopeo s", heading)
    if table:
        for row in table["rows"]:
            workload = row[0]
            strata = area.measure(workload, f"strata {'pull --no-unpack' if name == 'fetch' else 'push'}",
                                  row[column(table, "strata s")])
            skopeo = area.measure(workload, "skopeo copy", row[column(table, "skopeo s")])
            area.compare(workload, strata, skopeo, target)
    return area


def snapshot_area(tables):
    area = Area("snapshot", "snapshot ops (Prepare, Mounts, Commit, Remove) vs containerd", "cycles/s",
                higher_is_better=True)
    table = find_table(tables, "workload", "containerd cycles/s")
    if table:
        for row in table["rows"]:
            workload = row[0]
            strata = area.measure(workload, "strata serve", row[column(table, "strata cycles/s")])
            containerd = area.measure(workload, "containerd", row[column(table, "containerd cycles/s")])
            area.compare(workload, strata, containerd, 2.0)
    return area


def union_area(tables):
    area = Area("union", "union view vs kernel overlayfs and fuse-overlayfs", "s")
    table = find_table(tables, "workload", "strata/fuse-overlayfs")
    if table:
        programs = [(index, title[: -len(" s, median (min-max)")]) for index, title in enumerate(table["header"])
                    if title.endswith(" s, median (min-max)")]
        for row in table["rows"]:
            workload = row[0]
            found = {title: area.measure(workload, title, row[index]) for index, title in programs}
            strata = found.get("strata-fsfilter") or found.get("strata")
            fuse = found.get("fuse-overlayfs")
            kernel = found.get("kernel overlayfs") or found.get("kernel")
            area.compare(workload, strata, fuse, 1.0)
            walk_or_read = workload.startswith("walk") or workload.startswith("read")
            area.compare(workload, strata, kernel, round(1 / 1.5, 3) if walk_or_read else None)
    return area


def serving_area(tables):
    area = Area("serving", "registry serving to skopeo vs docker-registry", "s")
    table = find_table(tables, "server", "seconds")
    if table:
        found = [area.measure(row[0], row[0], row[1]) for row in table["rows"]]
        strata = next((m for m in found if m and m["program"].startswith("strata")), None)
        peer = next((m for m in found if m and not m["program"].startswith("strata")), None)
        area.compare("skopeo copy docker:// dir:", strata, peer, 1.0)
    return area


def windows_area(tables):
    area = Area("windows-unpack", "Windows layer unpack vs the same Linux layer", "s")
    table = find_table(tables, "layer", "median s")
    if table:
        median, low, high = column(table, "median s"), column(table, "min s"), column(table, "max s")
        by_label = {}
        for row in table["rows"]:
            workload = row[0].split(" ", 1)[1] if " " in row[0] else row[0]
            by_label[row[0]] = area.measure(workload, row[0].split(" ", 1)[0],
                                            f"{row[median]} ({row[low]}-{row[high]})")
        for kind in ("tar", "tar.gz"):
            area.compare(kind, by_label.get(f"windows {kind}"), by_label.get(f"linux {kind}"), 1.3, "cost")
    return area


def vm_layer_area(tables):
    area = Area("vm-layer", "vm layer images (strata's EROFS encoder) vs the pull and unpack they follow", "s")
    pulls = find_table(tables, "image", "conversion / pull")
    if pulls:
        for row in pulls["rows"]:
            workload = f"{row[0]}: pull, then first vm mount"
            pull = area.measure(workload, "strata pull", row[column(pulls, "strata pull s")])
            conversion = area.measure(workload, "layer.erofs (first - second vm mount)",
                                      row[column(pulls, "conversion s")])
            area.compare(workload, conversion, pull, 0.30, "cost")
    table = find_table(tables, "layer", "convert / unpack")
    if table:
        for row in table["rows"]:
            workload = "all layers" if row[0] == "all" else f"layer {row[0]}"
            unpack = area.measure(workload, "unpack", row[column(table, "unpack s")])
            convert = area.measure(workload, "layer.erofs", row[column(table, "layer.erofs s")])
            area.compare(workload, convert, unpack, None, "cost")
            if "mkfs.erofs s (median)" in table["header"]:
                mkfs = area.measure(workload, "mkfs.erofs", row[column(table, "mkfs.erofs s")])
                area.compare(workload, convert, mkfs, None, "cost")
    return area


def peak_rss(log_name, tables):
    """The rows of the log's "### Peak RSS" tables (bench::PeakRssTable): one per operation and
    program, the area named after the log (the registry log's rows go to fetch or push)."""
    rows = []
    for table in tables:
        if table["header"][0] != "operation" or not any(h.startswith("peak RSS MB") for h in table["header"]):
            continue
        value_column = column(table, "peak RSS MB")
        for row in table["rows"]:
            value = parse_value(row[value_column])
            if value is None:
                continue
            operation, program = row[0], row[1]
            area = {"registry": "push" if operation.startswith("push") else "fetch"}.get(log_name, log_name)
            rows.append({"area": area, "operation": operation, "program": program,
                         "strata": program.startswith("strata"), "median": value[0], "min": value[1],
                         "max": value[2], "unit": "MB", "measured_as": row[column(table, "measured as")]})
    return rows


def peak_rss_table(rows):
    """Per operation, strata's programs first, then the peers'."""
    lines = ["| area | operation | program | peak RSS MB, median (min-max) | measured as |",
             "|---|---|---|---:|---|"]
    order = list(dict.fromkeys((r["area"], r["operation"]) for r in rows))
    for key in order:
        group = sorted((r for r in rows if (r["area"], r["operation"]) == key), key=lambda r: not r["strata"])
        for r in group:
            program = f"**{r['program']}**" if r["strata"] else r["program"]
            lines.append(f"| {r['area']} | {r['operation']} | {program} | {r['median']:.0f} "
                         f"({r['min']:.0f}-{r['max']:.0f}) | {r['measured_as']} |")
    return "\n".join(lines)


LOGS = [  # area, log, how to read it
    ("pull", "pull", pull_area),
    ("fetch", "registry", lambda t: registry_area(t, "fetch", "## pull", 2.0)),
    ("push", "registry", lambda t: registry_area(t, "push", "## push", 1.5)),
    ("snapshot", "snapshot", snapshot_area),
    ("union", "union", union_area),
    ("serving", "serving", serving_area),
    ("windows-unpack", "windows-unpack", windows_area),
    ("vm-layer", "vm-layer", vm_layer_area),
]


def format_number(value):
    if abs(value) >= 100 or (abs(value) >= 1 and float(value).is_integer()):
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def target_text(comparison):
    target = comparison["target"]
    if comparison["ratio_kind"] == "speed-up":
        return "—" if target is None else f"≥ {target:g}x"
    return "—" if target is None else f"≤ {target:g}x"


def verdict(comparison):
    return {True: "met", False: "**missed**", None: "(info)"}[comparison["met"]]


def summary_table(comparisons):
    lines = ["| area | workload | strata | median | peer | median | ratio | target | |",
             "|---|---|---|---:|---|---:|---:|---:|---|"]
    for c in comparisons:
        lines.append(f"| {c['area']} | {c['workload']} | {c['strata']} | {format_number(c['strata_median'])} {c['unit']} "
                     f"| {c['peer']} | {format_number(c['peer_median'])} {c['unit']} | {c['ratio']:.2f}x "
                     f"| {target_text(c)} | {verdict(c)} |")
    return "\n".join(lines)


PALETTE = ["#1f6feb", "#d1242f", "#8250df", "#bf8700", "#1a7f37"]


def bar_chart(area):
    """A horizontal grouped bar chart: one group per workload, one bar per program, each group
    scaled to its own largest value (the numbers are printed on the bars), min-max as whiskers."""
    workloads = list(dict.fromkeys(m["workload"] for m in area.measurements))
    programs = list(dict.fromkeys(m["program"] for m in area.measurements))
    # strata first, in the first colour
    programs.sort(key=lambda p: 0 if p.startswith("strata") or p in ("windows", "layer.erofs") else 1)
    colour = {program: PALETTE[i % len(PALETTE)] for i, program in enumerate(programs)}
    bar_height, gap, label_width, plot_width, value_width = 16, 14, 230, 380, 150
    legend_height, title_height = 22 * len(programs) + 8, 40
    group_height = bar_height * len(programs) + gap
    width = label_width + plot_width + value_width
    height = title_height + legend_height + group_height * len(workloads) + 10
    better = "higher is better" if area.higher_is_better else "lower is better"
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{html.escape(area.title)}</text>',
           f'<text x="10" y="35" fill="#555">median {html.escape(area.unit)} ({better}); whiskers: min-max; '
           f'bars scaled per workload</text>']
    for i, program in enumerate(programs):
        y = title_height + 8 + 22 * i
        svg.append(f'<rect x="10" y="{y}" width="14" height="14" fill="{colour[program]}"/>')
        svg.append(f'<text x="30" y="{y + 11}">{html.escape(program)}</text>')
    top = title_height + legend_height
    for g, workload in enumerate(workloads):
        group = {m["program"]: m for m in area.measurements if m["workload"] == workload}
        scale = max(m["max"] for m in group.values()) or 1
        y0 = top + g * group_height
        svg.append(f'<text x="{label_width - 8}" y="{y0 + group_height / 2}" text-anchor="end">'
                   f'{html.escape(workload[:34])}</text>')
        for b, program in enumerate(programs):
            m = group.get(program)
            if m is None:
                continue
            y = y0 + b * bar_height
            length = plot_width * m["median"] / scale
            svg.append(f'<rect x="{label_width}" y="{y + 1}" width="{length:.1f}" height="{bar_height - 2}" '
                       f'fill="{colour[program]}"/>')
            low, high = label_width + plot_width * m["min"] / scale, label_width + plot_width * m["max"] / scale
            middle = y + bar_height / 2
            svg.append(f'<line x1="{low:.1f}" y1="{middle}" x2="{high:.1f}" y2="{middle}" stroke="black"/>')
            svg.append(f'<text x="{label_width + plot_width + 6}" y="{y + bar_height - 4}">'
                       f'{format_number(m["median"])} {html.escape(area.unit)}</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", required=True, type=Path)
    parser.add_argument("--out", required=True, help="output prefix: writes OUT.md, OUT.json, OUT-<area>.svg")
    parser.add_argument("--mode", default="full")
    parser.add_argument("--commit", default="unknown")
    args = parser.parse_args()
    out = Path(args.out)

    areas, notes, raw, loads, uptimes = [], [], {}, {}, {}
    for name, log_name, read in LOGS:
        log = args.logs / f"{log_name}.log"
        if not log.exists():
            continue
        text = log.read_text(errors="replace")
        raw[log_name] = text
        area = read(parse_tables(text))
        if not area.measurements:
            if name == "push" and "push skipped" in text:
                continue
            notes.append(f"{name}: no results in {log} (see the log)")
            continue
        areas.append(area)
        load = re.search(r"load average ([\d.]+)", text)
        if load and log_name not in loads:
            loads[log_name] = float(load.group(1))
        for when, line in re.findall(r"<!-- scripts/bench: uptime (before|after): (.*?) -->", text):
            uptimes.setdefault(log_name, {})[when] = line.strip()

    rss = []
    for log_name in dict.fromkeys(log for _, log, _ in LOGS):
        if log_name in raw:
            rss += peak_rss(log_name, parse_tables(raw[log_name]))

    comparisons = [c for area in areas for c in area.comparisons]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for stale in out.parent.glob(f"{out.name}-*.svg"):  # an earlier run's, of an area without results now
        stale.unlink()
    for area in areas:
        Path(f"{out}-{area.name}.svg").write_text(bar_chart(area))

    report = {
        "generated": stamp, "mode": args.mode, "commit": args.commit,
        "ratio_kinds": {"speed-up": "how many times faster strata is (peer time / strata time; for rates strata / peer)",
                        "cost": "strata's time / the other's time"},
        "comparisons": comparisons,
        "areas": {area.name: {"title": area.title, "unit": area.unit, "higher_is_better": area.higher_is_better,
                              "measurements": area.measurements} for area in areas},
        "load_average_before": loads,
        "uptime": uptimes,
        "peak_rss": rss,
        "notes": notes,
    }
    Path(f"{out}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")

    md = [f"# strata benchmarks, {stamp}", "",
          f"`scripts/bench{' --quick' if args.mode == 'quick' else ''}` at commit {args.commit}; raw output in "
          f"[{args.logs.name}/]({args.logs.name}/). Ratios: a *speed-up* (targets ≥) is how many times faster strata "
          "is than the peer (peer time / strata time; strata rate / peer rate for snapshot ops); for windows-unpack "
          "and vm-layer (targets ≤) it is a cost: strata's time over the other. Targets from issue 12, for windows-unpack "
          "(≤ 1.3x) and vm-layer (≤ 0.30) from bench/README.md; \"(info)\" rows have none.", "",
          "## Summary", "", summary_table(comparisons), ""]
    met = sum(1 for c in comparisons if c["met"] is True)
    missed = [c for c in comparisons if c["met"] is False]
    md.append(f"{met} targets met, {len(missed)} missed"
              + (": " + "; ".join(f"{c['area']} {c['workload']} vs {c['peer']} ({c['ratio']:.2f}x, "
                                  f"target {target_text(c)})" for c in missed) if missed else "") + ".")
    md.append("")
    if loads:
        md.append("Load average before each benchmark (2 CPUs; above ~1 something else was running): "
                  + ", ".join(f"{name} {load:g}" for name, load in loads.items()) + ".")
        md.append("")
    if uptimes:
        md.append("`uptime` before and after each benchmark (other engineers' builds and tests share the 2 cores):")
        md.append("")
        for name, seen in uptimes.items():
            md.append(f"- {name}: before `{seen.get('before', '?')}`; after `{seen.get('after', '?')}`")
        md.append("")
    for note in notes:
        md.append(f"- note: {note}")
    if rss:
        md += ["", "## Peak RSS", "",
               "Peak resident memory of each strata operation (bold) next to its peers' in the same run: "
               "ru_maxrss of a command (wait4), VmHWM of a daemon (/proc/PID/status).", "",
               peak_rss_table(rss)]
    md += ["", "## Charts", ""]
    for area in areas:
        md += [f"![{area.title}]({out.name}-{area.name}.svg)", ""]
    md += ["## Full tables", ""]
    shown = set()
    for name, log_name, _ in LOGS:
        if log_name in shown or log_name not in raw:
            continue
        shown.add(log_name)
        md += [f"### {log_name}", ""]
        last_heading = None
        for table in parse_tables(raw[log_name]):
            if table["heading"] and table["heading"] != last_heading:
                md += ["**" + table["heading"].lstrip("# ") + "**", ""]
                last_heading = table["heading"]
            md.append("| " + " | ".join(table["header"]) + " |")
            md.append("|" + "|".join("---" for _ in table["header"]) + "|")
            md += ["| " + " | ".join(row) + " |" for row in table["rows"]]
            md.append("")
    Path(f"{out}.md").write_text("\n".join(md).rstrip() + "\n")
    print(f"wrote {out}.md, {out}.json and {len(areas)} charts; {met} targets met, {len(missed)} missed")
    for note in notes:
        print(f"note: {note}")
    return 1 if notes else 0


if __name__ == "__main__":
    raise SystemExit(main())
