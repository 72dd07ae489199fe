"""Turns the harness's results dict into results.md, results.json and PNG plots."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

SERVERS = ["scaivault", "openbao"]
LABEL = {"scaivault": "ScaiVault", "openbao": "OpenBao"}
COLOR = {"scaivault": "#2a6fdb", "openbao": "#f28e2b"}
WL_TITLE = {
    "read": "read one 100-byte secret",
    "write": "write new versions",
    "mix": "90% read / 10% write",
    "list": "list 1,000-secret prefix",
    "health": "baseline: unauthenticated health check",
}
# (key, label, unit, higher_is_better)
METRICS = [
    ("rps", "throughput", "req/s", True),
    ("p50_ms", "latency p50", "ms", False),
    ("p99_ms", "latency p99", "ms", False),
    ("rss_peak_mb", "server RSS peak", "MiB", False),
    ("server_cpu_us_per_req", "server CPU per request", "µs", False),
]


def spread(vals: list[float]) -> dict:
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(vals: list[float]) -> str:
    if not vals:
        return "–"
    s = spread(vals)
    if len(vals) == 1:
        return fmt(s["median"])
    return f"**{fmt(s['median'])}** ({fmt(s['min'])}–{fmt(s['max'])})"


def ratio(sv: list[float], bao: list[float]) -> str:
    if not sv or not bao:
        return "–"
    b = statistics.median(bao)
    if b == 0:
        return "–"
    return f"{statistics.median(sv) / b:.2f}×"


def wl_title(wl: str, cfg: dict) -> str:
    t = WL_TITLE.get(wl, wl)
    if wl == "list":
        t = f"list {cfg['per_prefix']:,}-secret prefix"
    if wl == "mix":
        t = f"{100 - cfg['write_pct_in_mix']}% read / {cfg['write_pct_in_mix']}% write over {cfg['secrets']:,} secrets"
    if wl == "read":
        t = f"read one {cfg['value_bytes']}-byte secret"
    return t


def summary_rows(results: dict) -> dict:
    """Medians and spreads per workload/metric/server, plus ratios (for results.json)."""
    out: dict = {}
    for wl, per in results["runs"].items():
        out[wl] = {}
        for key, _label, _unit, _hib in METRICS:
            row = {}
            for name in SERVERS:
                vals = [r[key] for r in per.get(name, [])]
                if vals:
                    row[name] = spread(vals)
            if "scaivault" in row and "openbao" in row and row["openbao"]["median"]:
                row["ratio_sv_over_bao"] = row["scaivault"]["median"] / row["openbao"]["median"]
            out[wl][key] = row
    return out


def markdown(results: dict) -> str:
    m, cfg, srv = results["machine"], results["config"], results["servers"]
    runs = results["runs"]
    lines = []
    lines.append("# ScaiVault vs OpenBao — benchmark results")
    lines.append("")
    lines.append(f"Run **{cfg['label']}** on {m['date_utc']}: {m['cores']} cores ({m['cpu_model']}), "
                 f"{m['memory_gib']} GiB RAM, Linux {m['kernel']}, data on {m['filesystem']}; "
                 f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}. "
                 f"Load generator {m['wrk']} on the same machine, {cfg['wrk_threads']} threads. "
                 f"Total harness time {results.get('total_seconds', 0):.0f} s.")
    lines.append("")
    lines.append(f"Each cell: **median** (min–max) over {cfg['reps']} repetition(s) of {cfg['duration_s']} s "
                 f"(cold start: {cfg['coldstart_reps']} restarts). Ratio = ScaiVault median / OpenBao median: "
                 "for throughput higher is better for ScaiVault; for latency, memory, CPU and time lower is better.")
    lines.append("")
    lines.append("| | ScaiVault | OpenBao |")
    lines.append("|---|---|---|")
    for k, label in [("version", "version"), ("storage", "storage"), ("audit", "audit log"),
                     ("logging", "server log"), ("tls", "TLS"), ("mode", "mode")]:
        lines.append(f"| {label} | {srv.get('scaivault', {}).get(k, '?')} | {srv.get('openbao', {}).get(k, '?')} |")
    lines.append("")
    lines.append("| workload | metric | ScaiVault | OpenBao | ScaiVault / OpenBao |")
    lines.append("|---|---|---|---|---|")
    for wl, per in runs.items():
        title = wl_title(wl, cfg)
        conns = cfg["connections"].get(wl, "?")
        first = True
        for key, label, unit, _hib in METRICS:
            sv = [r[key] for r in per.get("scaivault", [])]
            bao = [r[key] for r in per.get("openbao", [])]
            name = f"**{wl}**: {title} ({conns} conns)" if first else ""
            first = False
            lines.append(f"| {name} | {label} ({unit}) | {cell(sv)} | {cell(bao)} | {ratio(sv, bao)} |")
        errs = {n: (sum(r["errors"] for r in per.get(n, [])), sum(r["requests"] for r in per.get(n, [])))
                for n in SERVERS}
        if any(e for e, _ in errs.values()):
            lines.append(f"| | errors / requests | {errs['scaivault'][0]:,} / {errs['scaivault'][1]:,} | "
                         f"{errs['openbao'][0]:,} / {errs['openbao'][1]:,} | |")
    cs = results["coldstart_s"]
    sv_cs = [x * 1000 for x in cs.get("scaivault", [])]
    bao_cs = [x * 1000 for x in cs.get("openbao", [])]
    lines.append(f"| **start** | cold start to first served read (ms) | {cell(sv_cs)} | {cell(bao_cs)} | "
                 f"{ratio(sv_cs, bao_cs)} |")
    idle = results["idle_rss_mb"]
    if idle:
        lines.append(f"| | idle RSS after start, {cfg['secrets']:,} secrets stored (MiB) | "
                     f"{fmt(idle.get('scaivault', 0))} | {fmt(idle.get('openbao', 0))} | "
                     f"{ratio([idle.get('scaivault', 0)], [idle.get('openbao', 0)])} |")
    hwm = results.get("hwm_mb", {})
    if hwm:
        lines.append(f"| | peak RSS over the whole run, VmHWM (MiB) | {fmt(hwm.get('scaivault', 0))} | "
                     f"{fmt(hwm.get('openbao', 0))} | {ratio([hwm.get('scaivault', 0)], [hwm.get('openbao', 0)])} |")
    seed = results.get("seed", {})
    if seed:
        lines.append(f"| | seeding {cfg['secrets']:,} secrets, {cfg.get('seed_concurrency', 16)} Python clients (s) | "
                     f"{fmt(seed['scaivault']['seconds'])} | {fmt(seed['openbao']['seconds'])} | "
                     f"{ratio([seed['scaivault']['seconds']], [seed['openbao']['seconds']])} |")
    lines.append("")
    variants = results.get("sv_read_variants") or {}
    if variants:
        on_runs = runs.get("read", {}).get("scaivault", [])
        bao_runs = runs.get("read", {}).get("openbao", [])
        names = list(variants)
        lines.append("What ScaiVault's audit settings cost, `read` workload: extra passes after the table above, "
                     "ScaiVault restarted with the flags named (ratios: variant / default):")
        lines.append("")
        lines.append("| metric | ScaiVault default | " + " | ".join(f"`{n}` (ratio)" for n in names)
                     + " | OpenBao (audit on) |")
        lines.append("|---|---|" + "---|" * len(names) + "---|")
        for key, label, unit, _hib in METRICS:
            if key == "rss_peak_mb":
                continue
            a = [r[key] for r in on_runs]
            c = [r[key] for r in bao_runs]
            cols = []
            for n in names:
                b = [r[key] for r in variants[n]]
                cols.append(f"{cell(b)} ({ratio(b, a)})")
            lines.append(f"| {label} ({unit}) | {cell(a)} | " + " | ".join(cols) + f" | {cell(c)} |")
        lines.append("")
    commit_rows = []
    passes = [(wl, per.get("scaivault", [])) for wl, per in runs.items()]
    passes += [(f"read `{n}`", rs) for n, rs in variants.items()]
    for wl, rs in passes:
        for i, r in enumerate(rs):
            c, p = r.get("audit_commit"), r.get("audit_pause")
            if c:
                pauses = f"{p['count']:,.0f} | ≤ {p['p99_le_ms']:g} | ≤ {p['max_le_ms']:g}" if p else "– | – | –"
                commit_rows.append(f"| {wl} | {i + 1} | {c['count']:,.0f} | {c['count'] / r['duration_s']:,.0f} | "
                                   f"≤ {c['p50_le_ms']:g} | ≤ {c['p99_le_ms']:g} | ≤ {c['max_le_ms']:g} | {pauses} |")
    if commit_rows:
        lines.append("ScaiVault's audit group commits (insert + fsync; every audited request waits for one or "
                     "two of them), from its `scaivault_audit_commit_seconds` histogram: bucket bounds holding "
                     "the median, the 99th percentile and the slowest commit of each run. A commit includes "
                     "any wait for the writer while a WAL checkpoint holds it for its last frames: those "
                     "pauses (`scaivault_audit_checkpoint_pause_seconds`) are in the last three columns:")
        lines.append("")
        lines.append("| workload | rep | commits | commits/s | p50 (ms) | p99 (ms) | max (ms) | "
                     "checkpoint pauses | pause p99 (ms) | pause max (ms) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        lines.extend(commit_rows)
        lines.append("")
    noisy = []
    for wl, per in runs.items():
        for n in SERVERS:
            for i, r in enumerate(per.get(n, [])):
                if r.get("other_cores", 0) > 0.25:
                    noisy.append(f"{wl}/{LABEL[n]} rep {i + 1}: {r['other_cores']:.2f} cores")
    if noisy:
        lines.append("**Other CPU** during these runs (cores busy outside the server and wrk: other processes, "
                     "and kernel threads such as the filesystem journal flushing fsyncs): " + "; ".join(noisy) + ".")
        lines.append("")
    # CPU split: where the two cores went (server vs load generator), median over reps.
    lines.append("CPU split during the runs (median cores busy; the machine has "
                 f"{m['cores']}): ")
    lines.append("")
    lines.append("| workload | ScaiVault server | wrk (vs ScaiVault) | OpenBao server | wrk (vs OpenBao) |")
    lines.append("|---|---|---|---|---|")
    for wl, per in runs.items():
        def med(n, k):
            v = [r[k] for r in per.get(n, [])]
            return f"{statistics.median(v):.2f}" if v else "–"
        lines.append(f"| {wl} | {med('scaivault', 'server_cores')} | {med('scaivault', 'wrk_cores')} | "
                     f"{med('openbao', 'server_cores')} | {med('openbao', 'wrk_cores')} |")
    lines.append("")
    lines.append("Plots: `throughput.png`, `latency.png`, `memory.png`, `coldstart.png`. "
                 "Raw per-repetition numbers: `results.json`.")
    if results.get("profiles"):
        lines.append("")
        lines.append("CPU profiles (perf, unmeasured extra pass): " +
                     ", ".join(f"`{p}`" for p in results["profiles"]) + ".")
    lines.append("")
    return "\n".join(lines)


def make_plots(results: dict, out: Path) -> list[str]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    runs, cfg, m = results["runs"], results["config"], results["machine"]
    foot = (f"{m['date_utc']} · {m['cores']} cores, {m['memory_gib']} GiB · {cfg['reps']}×{cfg['duration_s']} s · "
            f"bars = median, whiskers = min–max · ScaiVault audit "
            f"{'on' if results['servers'].get('scaivault', {}).get('audit', '').startswith('on') else 'off'}, "
            f"OpenBao audit {'on' if results['servers'].get('openbao', {}).get('audit', '').startswith('on') else 'off'}")
    written = []
    wls = list(runs.keys())

    def bars(ax, groups: list[str], series: dict[str, list[list[float]]], ylabel: str):
        x = range(len(groups))
        width = 0.38
        for j, name in enumerate(SERVERS):
            data = series[name]
            med = [statistics.median(v) if v else 0 for v in data]
            lo = [med[i] - (min(v) if v else 0) for i, v in enumerate(data)]
            hi = [(max(v) if v else 0) - med[i] for i, v in enumerate(data)]
            pos = [i + (j - 0.5) * width for i in x]
            ax.bar(pos, med, width, yerr=[lo, hi], capsize=3, color=COLOR[name], label=LABEL[name])
            tops = [max(v) if v else 0 for v in data]
            for p, v, top in zip(pos, med, tops):
                ax.annotate(fmt(v), (p, top), ha="center", va="bottom", fontsize=7,
                            xytext=(0, 2), textcoords="offset points")
        ax.margins(y=0.12)
        ax.set_xticks(list(x))
        ax.set_xticklabels(groups, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)

    if wls:
        # Throughput: one panel per workload (their scales differ by orders of magnitude).
        fig, axes = plt.subplots(1, len(wls), figsize=(3.2 * len(wls), 3.8), squeeze=False)
        for ax, wl in zip(axes[0], wls):
            series = {n: [[r["rps"] for r in runs[wl].get(n, [])]] for n in SERVERS}
            bars(ax, [wl], series, "requests/s")
            ax.set_title(wl_title(wl, cfg), fontsize=8)
        axes[0][0].legend(fontsize=8)
        fig.suptitle("Throughput (higher is better)")
        fig.text(0.5, 0.01, foot, ha="center", fontsize=6)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        written.append("throughput.png")

        fig, axes = plt.subplots(1, len(wls), figsize=(3.2 * len(wls), 3.8), squeeze=False)
        for ax, wl in zip(axes[0], wls):
            series = {n: [[r["p50_ms"] for r in runs[wl].get(n, [])], [r["p99_ms"] for r in runs[wl].get(n, [])]]
                      for n in SERVERS}
            bars(ax, ["p50", "p99"], series, "ms")
            ax.set_title(wl_title(wl, cfg), fontsize=8)
        axes[0][0].legend(fontsize=8)
        fig.suptitle("Latency under load (lower is better)")
        fig.text(0.5, 0.01, foot, ha="center", fontsize=6)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        written.append("latency.png")

    groups = ["idle"] + wls
    series = {n: [[results["idle_rss_mb"].get(n, 0)]] + [[r["rss_peak_mb"] for r in runs[wl].get(n, [])] for wl in wls]
              for n in SERVERS}
    fig, ax = plt.subplots(figsize=(1.3 * len(groups) + 2, 3.8))
    bars(ax, groups, series, "RSS (MiB)")
    ax.legend(fontsize=8)
    ax.set_title("Server memory: idle and peak RSS during each workload (lower is better)", fontsize=9)
    fig.text(0.5, 0.01, foot, ha="center", fontsize=6)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out / "memory.png", dpi=110)
    plt.close(fig)
    written.append("memory.png")

    series = {n: [[x * 1000 for x in results["coldstart_s"].get(n, [])]] for n in SERVERS}
    fig, ax = plt.subplots(figsize=(4, 3.8))
    bars(ax, ["cold start"], series, "ms to first served read")
    ax.legend(fontsize=8)
    ax.set_title("Cold start on stored data (lower is better)", fontsize=9)
    fig.text(0.5, 0.01, foot.split(" · bars")[0], ha="center", fontsize=6)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out / "coldstart.png", dpi=110)
    plt.close(fig)
    written.append("coldstart.png")
    return written


def write_all(results: dict, out: Path, plots: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = dict(results)
    # Workloads in the order they were run (results.json may come back key-sorted).
    order = results["config"].get("workloads", []) + ["health"]
    results["runs"] = {w: results["runs"][w] for w in sorted(results["runs"], key=lambda w: order.index(w)
                                                          if w in order else len(order))}
    results["summary"] = summary_rows(results)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = markdown(results)
    (out / "results.md").write_text(md)
    if plots:
        make_plots(results, out)
    print(md)
