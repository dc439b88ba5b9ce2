"""Where ftkit's training loop spends its time: torch.profiler over a window of steps.

    python benchmarks/profile_loop.py --arch bert-base-uncased --steps 60 --report profile.txt
    python benchmarks/profile_loop.py --arch bert-base-uncased --tiny --steps 8 --skip 2 --warmup 1 --active 3

Runs `ftkit finetune` in this process through its console entry (ftkit.cli.main) under
torch.profiler. A global optimizer hook advances the profiler once per optimizer step, so the
window holds whole steps: --skip steps untraced, --warmup traced and dropped, --active kept.
Reports the top 15 ops by self CUDA time (CPU time without a GPU) and the share of the window in
which the GPU runs no kernel, copy or memset. Profiling adds CPU overhead, so that idle share is
an upper bound of the unprofiled loop's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from common import ARCHS, build_checkpoint, label_names, machine, read_jsonl, versions
from train import ftkit_command, recipe_config
from train import parse_args as train_args


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=ARCHS, required=True)
    p.add_argument("--steps", type=int, default=60, help="optimizer steps ftkit runs (>= skip + warmup + active)")
    p.add_argument("--skip", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--active", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=("bf16", "no"))
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--model", type=Path, help="use this checkpoint folder instead of building one")
    p.add_argument("--report", type=Path, default=Path("profile.txt"))
    p.add_argument("--trace", type=Path, help="also keep the Chrome trace here")
    args = p.parse_args()
    if args.steps < args.skip + args.warmup + args.active:
        p.error("--steps must be at least --skip + --warmup + --active")
    return args


def main() -> None:
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.profiler import ProfilerActivity, profile, schedule

    from ftkit.cli import main as ftkit_main

    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="ftkit-profile-"))
    flags = ["--arch", args.arch, "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    run = train_args(flags + (["--precision", args.precision] if args.precision else []))
    labels = label_names(read_jsonl(run.data / "train.jsonl"), recipe_config(args.arch).data.labels)
    checkpoint = args.model or build_checkpoint(args.arch, work / "checkpoint", args.tiny, labels)
    argv = ftkit_command(run, checkpoint, work / "run")[3:]  # drop `python -m ftkit`
    print("ftkit " + " ".join(argv), flush=True)

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    window = schedule(skip_first=args.skip, wait=0, warmup=args.warmup, active=args.active, repeat=1)
    with profile(activities=activities, schedule=window) as prof:
        hook = register_optimizer_step_post_hook(lambda *_: prof.step())
        try:
            ftkit_main(argv)
        except SystemExit as done:  # Typer exits 0 on success
            if done.code:
                raise
        finally:
            hook.remove()
    trace = args.trace or work / "trace.json"
    prof.export_chrome_trace(str(trace))
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    lines = [
        f"ftkit training loop, {args.arch}{' (tiny)' if args.tiny else ''}: steps {args.skip + args.warmup + 1}-{args.skip + args.warmup + args.active} "
        f"of {args.steps}, batch {args.batch_size}, {run.precision}; {machine()}; {versions()}",
        "command: ftkit " + " ".join(argv),
        gpu_idle(trace, args.active, args.batch_size) if cuda else "GPU idle share: n/a (no GPU)",
        "",
        f"top 15 ops by {sort.replace('_total', '')}:",
        prof.key_averages().table(sort_by=sort, row_limit=15),
    ]
    args.report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    shutil.rmtree(work)


def gpu_idle(trace: Path, active: int, batch_size: int) -> str:
    """Share of the profiled steps' span in which no kernel, copy or memset runs (Chrome trace, us)."""
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e.get("ph") == "X"]
    steps = [e for e in events if str(e.get("name", "")).startswith("ProfilerStep#")]
    if not steps:
        return "GPU idle share: unknown (no ProfilerStep events in the trace)"
    start, end = min(e["ts"] for e in steps), max(e["ts"] + e["dur"] for e in steps)
    spans = sorted((max(e["ts"], start), min(e["ts"] + e["dur"], end)) for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"))
    busy, reach = 0.0, start
    for begin, finish in spans:  # the union of the intervals: overlapping streams count once
        if finish > reach:
            busy += finish - max(begin, reach)
            reach = finish
    span_ms = (end - start) / 1000
    return (f"GPU idle share: {1 - busy / (end - start):.1%} of {span_ms:.1f} ms over {active} steps "
            f"({span_ms / active:.1f} ms/step, {active * batch_size / span_ms * 1000:.0f} samples/s while profiled)")


if __name__ == "__main__":
    main()
