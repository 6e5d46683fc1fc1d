"""`python -m stress_test burst|sweep|poisson [options]`: parse, run, report, save."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console

from stress_test import corpus
from stress_test.client import GatewayClient
from stress_test.exchange import RequestSpec
from stress_test.load import Level, Runner, burst, doubling, poisson, sweep
from stress_test.measure import RequestResult
from stress_test.options import build_parser, request_spec, settings_of, texts, voices
from stress_test.plots import write_plots
from stress_test.progress import RichProgress
from stress_test.report import print_summary, print_sweep, scicom_blocks
from stress_test.results import run_document, write_json
from stress_test.saved import load_run
from stress_test.slo import Slo
from stress_test.stats import Summary, summarize


async def run(
    args: argparse.Namespace,
    spec: RequestSpec,
    picker: corpus.TextPicker,
    command: Sequence[str],
    console: Console,
) -> int:
    slo: Slo = args.slo
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    levels: list[Level] = []
    summary: Summary | None = None
    async with GatewayClient(
        args.url, api_key=args.api_key or None, timeout=args.timeout
    ) as client:
        if args.wait_ready > 0 and not await client.wait_ready(args.wait_ready):
            console.print(f"[red]{args.url} was not ready within {args.wait_ready:g} s[/red]")
            return 1
        models = await client.models()
        with RichProgress(enabled=not args.no_progress) as progress:
            runner = Runner(
                client,
                spec,
                picker,
                pcm_rate=args.pcm_rate,
                stall_threshold=args.stall_threshold,
                progress=progress,
            )
            warmup = await runner.warmup(max(0, args.warmup))
            results: list[RequestResult]
            if args.mode == "burst":
                concurrency = args.concurrency or args.requests
                results = await burst(runner, args.requests, concurrency)
            elif args.mode == "poisson":
                results = await poisson(runner, args.rate, args.duration, random.Random(args.seed))
            else:
                plan = args.levels or doubling(args.concurrency or 64)
                levels = await sweep(runner, plan, args.duration, slo, keep_going=args.keep_going)
                results = [r for level in levels for r in level.results]
    summary = show(console, args.mode, results, levels, slo)
    if args.save is not None:
        document = run_document(
            mode=args.mode,
            command=command,
            settings=settings_of(args),
            models=models,
            started_at=started_at,
            warmup=warmup,
            results=results,
            summary=summary if args.mode != "sweep" else None,
            levels=levels,
        )
        written = [write_json(args.save, document), *write_plots(args.save, results, slo, levels)]
        console.print("saved: " + ", ".join(str(path) for path in written))
    return 0


def show(
    console: Console,
    mode: str,
    results: Sequence[RequestResult],
    levels: Sequence[Level],
    slo: Slo,
) -> Summary:
    """Print the report; for a sweep, the level table and the capacity level's details."""
    if mode == "sweep":
        print_sweep(console, levels)
        held = [level for level in levels if level.summary.meets_slo]
        shown = held[-1] if held else levels[0]
        summary = shown.summary
        print_summary(console, summary, f"sweep level {shown.concurrency} stream(s)")
    else:
        summary = summarize(results, slo)
        print_summary(console, summary, f"{mode}: {summary.requests} requests")
    console.print(scicom_blocks(summary), markup=False, highlight=False)
    return summary


def report(args: argparse.Namespace, console: Console) -> int:
    """`report RESULTS`: a saved run judged again, under its own SLO or `--slo`."""
    run = load_run(args.results)
    slo = args.slo or run.slo
    show(console, run.mode, run.results, run.levels(slo) if run.mode == "sweep" else [], slo)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    command = ["python", "-m", "stress_test", *arguments]
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Logs (docker compose, CI) are read wide; rich's 80 columns would wrap the tables.
        console = Console(highlight=False, width=120)
    if args.mode == "report":
        try:
            return report(args, console)
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"cannot read {args.results}: {exc}")
    try:
        spec = request_spec(args)
        picker = corpus.TextPicker(texts(args), voices(args), random.Random(args.seed))
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    console.print(f"$ {shlex.join(command)}", markup=False)
    try:
        return asyncio.run(run(args, spec, picker, command, console))
    except KeyboardInterrupt:
        return 130
