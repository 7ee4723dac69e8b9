"""The `exifray` command line (also `python -m exifray`). The only place that configures logging.

    exifray synth data/crawl --scenario indoor_outdoor --photos 2000
    exifray ingest data/crawl --out data/dataset --sizes 32,64
    exifray train --data data/dataset --out runs/fusion --modality fusion --backbone TestTinyCNN

Errors a user can cause end in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from exifray import schema
from exifray.cli_args import EXIT_USAGE, Commands, Parser, float_triple, int_list, setting_flag, str_list, values
from exifray.cli_use import add_export_best, add_organize, add_predict, add_serve
from exifray.config import CRAWL_MODES, ClientConfig, CrawlConfig, IngestConfig, TrialConfig
from exifray.errors import ExifrayError
from exifray.version import __version__

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("exifray")
EXIT_FAILURE = 1


# --- subcommands -------------------------------------------------------------------------------

def _add_synth(commands: Commands) -> None:
    from exifray.data.synth import SynthConfig

    synth = commands.add_parser("synth", help="write a synthetic Flickr-shaped CRAWL DIR (demo data)")
    synth.add_argument("out", help="output crawl directory")
    setting_flag(synth, "--scenario", SynthConfig, "scenario")
    for name in ("photos", "seed", "image_size"):
        setting_flag(synth, f"--{name.replace('_', '-')}", SynthConfig, name, type=int)
    for name in ("image_signal", "exif_signal", "label_noise"):
        setting_flag(synth, f"--{name.replace('_', '-')}", SynthConfig, name, type=float)
    synth.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from exifray.data.synth import SynthConfig, generate

    config = SynthConfig(**values(args, SynthConfig))
    records = generate(args.out, config)
    print(f"synth: {len(records)} photos ({config.scenario}, seed {config.seed}) written to {args.out}")
    return 0


def _add_exif(commands: Commands) -> None:
    exif = commands.add_parser("exif", help="print the catalogue EXIF of JPEGs, getExif JSON or MIRFLICKR txt files")
    exif.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    exif.set_defaults(func=cmd_exif)


def cmd_exif(args: argparse.Namespace) -> int:
    from exifray.exif.parse import exif_report_line, iter_exif_paths

    failures = total = 0
    for path in iter_exif_paths(args.paths):
        line = exif_report_line(path)
        total += 1
        failures += line["error"] is not None
        print(json.dumps(line), flush=True)
    if failures:
        print(f"exifray exif: {failures} of {total} files could not be read (see their \"error\")", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _add_ingest(commands: Commands) -> None:
    ingest = commands.add_parser("ingest", help="decode photos and EXIF once into a Parquet DATASET DIR (Ray Data)")
    ingest.add_argument("inputs", nargs="+", help="crawl dirs (or thesis / MIRFLICKR / label-folder layouts)")
    ingest.add_argument("--out", required=True, help="dataset directory to write (replaced atomically)")
    setting_flag(ingest, "--sizes", IngestConfig, "sizes", type=int_list)
    setting_flag(ingest, "--labels", IngestConfig, "label_level")
    setting_flag(ingest, "--label-mode", IngestConfig, "label_mode")
    setting_flag(ingest, "--concepts", IngestConfig, "concepts", type=str_list)
    setting_flag(ingest, "--format", IngestConfig, "input_format")
    setting_flag(ingest, "--split", IngestConfig, "split_fractions", type=float_triple)
    for name in ("seed", "shard_size", "max_pixels", "num_cpus"):
        setting_flag(ingest, f"--{name.replace('_', '-')}", IngestConfig, name, type=int)
    setting_flag(ingest, "--address", IngestConfig, "address")
    ingest.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from exifray.data.ingest import run_ingest

    config = IngestConfig(inputs=tuple(args.inputs), out=args.out, **values(args, IngestConfig, ("inputs", "out")))
    print(run_ingest(config).line())
    return 0


_TRAIN_FLAGS: dict[str, Callable[[str], object]] = {
    "modality": str, "backbone": str, "weights": str, "image_size": int, "fine_tune_layers": int,
    "exif_tags": str_list, "fusion_width": int, "learning_rate": float, "batch_size": int, "epochs": int,
    "fine_tune_epochs": int, "dropout": float, "seed": int, "country": str, "threads": int, "precision": str,
    "feature_cache": str}


def _add_train(commands: Commands) -> None:
    train = commands.add_parser("train", help="train and evaluate one configuration (the sweep's trial function)")
    train.add_argument("--data", required=True, help="dataset directory from `exifray ingest`")
    train.add_argument("--out", required=True, help="where model.keras, metrics.json, settings.json go")
    for name, kind in _TRAIN_FLAGS.items():
        setting_flag(train, f"--{name.replace('_', '-')}", TrialConfig, name, type=kind, keep_default=False)
    for flag, name in (("--augment", "augment"), ("--jit-compile", "jit_compile")):
        setting_flag(train, flag, TrialConfig, name, action="store_const", const=True, keep_default=False)
    setting_flag(train, "--patience", TrialConfig, "early_stopping_patience", type=int, keep_default=False)
    train.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from exifray.models.registry import get_backbone_spec
    from exifray.train import run_trial

    config = TrialConfig.from_tune(values(args, TrialConfig))
    get_backbone_spec(config.backbone)  # fail on an unknown name before loading TensorFlow
    result = run_trial(config, args.data, out_dir=args.out)
    print(json.dumps({key: result.metrics[key] for key in (
        schema.VAL_F1_MACRO, schema.TEST_F1_MACRO, schema.TEST_F1_MICRO, schema.TEST_ACCURACY, schema.EMISSIONS_KG,
        schema.ENERGY_KWH, schema.TRAIN_TIME_S, schema.PARAMS, schema.INFERENCE_MS, schema.EPOCHS)}))
    return 0


def _add_crawl(commands: Commands) -> None:
    crawl = commands.add_parser("crawl", help="download photos and EXIF from Flickr into a CRAWL DIR (key: "
                                "FLICKR_API_KEY)")
    crawl.add_argument("mode", choices=CRAWL_MODES, help="a group pool, a text search, or a thesis metadata file")
    crawl.add_argument("target", help="GROUP_ID, search TEXT, or METADATA.json")
    crawl.add_argument("--out", required=True, help="crawl directory (re-runs resume)")
    setting_flag(crawl, "--exif", CrawlConfig, "exif", action="store_true")
    setting_flag(crawl, "--require-tags", CrawlConfig, "require_tags", type=str_list)
    setting_flag(crawl, "--size", CrawlConfig, "size")
    for name in ("per_page", "start_page", "page_limit"):
        setting_flag(crawl, f"--{name.replace('_', '-')}", CrawlConfig, name, type=int)
    setting_flag(crawl, "--filter-tag", CrawlConfig, "filter_tag")
    setting_flag(crawl, "--label", CrawlConfig, "labels", type=str_list)
    setting_flag(crawl, "--metadata-only", CrawlConfig, "metadata_only", action="store_true")
    setting_flag(crawl, "--metadata-out", CrawlConfig, "metadata_out")
    setting_flag(crawl, "--concurrency", ClientConfig, "concurrency", type=int)
    setting_flag(crawl, "--rate-limit", ClientConfig, "rate_limit", type=float)
    setting_flag(crawl, "--progress-every", CrawlConfig, "progress_every_s", type=float)
    setting_flag(crawl, "--timeout", ClientConfig, "read_timeout_s", type=float)
    setting_flag(crawl, "--max-attempts", ClientConfig, "max_attempts", type=int)
    setting_flag(crawl, "--backoff", ClientConfig, "backoff_initial_s", type=float)
    setting_flag(crawl, "--api-url", ClientConfig, "api_url")
    setting_flag(crawl, "--static-url", ClientConfig, "static_url")
    crawl.set_defaults(func=cmd_crawl)


def cmd_crawl(args: argparse.Namespace) -> int:
    import asyncio

    from exifray.crawl.crawler import crawl

    client = ClientConfig(**values(args, ClientConfig))
    config = CrawlConfig(mode=args.mode, target=args.target, out=args.out, client=client,
                         **values(args, CrawlConfig, ("mode", "target", "out", "client")))
    report = asyncio.run(crawl(config, os.environ.get("FLICKR_API_KEY", "")))
    print(report.line())
    for photo_id, reason in list(report.failed.items())[:10]:
        print(f"  failed {photo_id}: {reason}")
    if len(report.failed) > 10:
        print(f"  ... {len(report.failed) - 10} more in {args.out}/crawl_report.json")
    return 0


def _add_sweep(commands: Commands) -> None:
    sweep = commands.add_parser("sweep", help="search hyperparameters with Ray Tune + Optuna over a search space file")
    sweep.add_argument("--space", required=True, help="search space YAML (see search_spaces/README.md)")
    sweep.add_argument("--data", required=True, help="dataset directory from `exifray ingest`")
    sweep.add_argument("--name", default=None, help="experiment name (default: the file's `name`)")
    sweep.add_argument("--storage-path", default=None,
                       help="where experiments live: a path, s3://... or gs://... (default: ./experiments)")
    sweep.add_argument("--num-samples", type=int, default=None, help="trials to run (overrides the file and "
                       "--smoke-test)")
    sweep.add_argument("--max-concurrent", type=int, default=None, help="trials at a time (overrides the file and "
                       "--smoke-test)")
    sweep.add_argument("--resume", action="store_true",
                       help="continue the experiment of the same name after the driver stopped or was killed")
    sweep.add_argument("--smoke-test", action="store_true",
                       help="one tiny trial of the file's code path (1 epoch per phase, TestTinyCNN, no weights); "
                            "--num-samples and --max-concurrent still win")
    sweep.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or in-process)")
    sweep.add_argument("--dashboard", action="store_true", help="an in-process Ray starts its dashboard too (its "
                       "URL is printed)")
    sweep.add_argument("--top", type=int, default=10, help="leaderboard rows to print at the end (default: 10)")
    _add_tracking_flags(sweep)
    sweep.set_defaults(func=cmd_sweep)


def _add_tracking_flags(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                       help="track the sweep in MLflow: a parent run and a child run per trial (default URI: "
                            "MLFLOW_TRACKING_URI; needs exifray[mlflow]; give it again with --resume; "
                            "docs/tracking.md)")
    sweep.add_argument("--wandb", default=None, metavar="PROJECT", help="track each trial as a W&B run in PROJECT "
                       "(WANDB_MODE, WANDB_DIR apply; needs exifray[wandb]; give it again with --resume)")


def cmd_sweep(args: argparse.Namespace) -> int:
    from exifray.space_file import load_sweep
    from exifray.sweep import describe, run_sweep
    from exifray.tracking import Tracking

    tracking = Tracking(args.mlflow, args.wandb).checked()
    plan = load_sweep(args.space).with_overrides(num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                                                 smoke_test=args.smoke_test)
    if args.smoke_test:
        print("--smoke-test changed: " + ("; ".join(plan.smoke_changes) or "nothing (the file is already tiny)"),
              flush=True)
    result = run_sweep(plan, args.data, name=args.name, storage_path=args.storage_path, resume=args.resume,
                       address=args.address, dashboard=args.dashboard, tracking=tracking)
    print(describe(result, plan.space, top=args.top))
    if tracking.mlflow:
        print(f"MLflow:       {tracking.mlflow} (experiment {args.name or plan.name}: a parent run, a child run per "
              f"trial)")
    if tracking.wandb:
        print(f"W&B:          project {tracking.wandb}, group {args.name or plan.name}")
    return 0


def _add_leaderboard(commands: Commands) -> None:
    from exifray.analysis import BY_CHOICES

    board = commands.add_parser("leaderboard", help="rank an experiment's trials; tables, Pareto front, fusion vs "
                                "image, importance, HTML report")
    board.add_argument("experiment", help="experiment directory (storage path/name), local or s3://...; finished or "
                       "still running")
    board.add_argument("--format", default="csv,md,html", help="comma-separated: csv, md, html (the report), json, "
                       "parquet (default: %(default)s)")
    board.add_argument("--out", default=None, help="output folder (default: EXPERIMENT/analysis)")
    board.add_argument("--top", type=int, default=None, help="keep only the best K rows of the leaderboard table")
    board.add_argument("--metric", default=None, help="rank, select and draw the Pareto front by this column "
                       "(default: the sweep's metric, a validation one); losses/emissions/times are minimised")
    board.add_argument("--by", default=BY_CHOICES[0], choices=BY_CHOICES,
                       help="the grouped table's key (default: %(default)s)")
    board.add_argument("--importance", action="append", default=[], metavar="CSV",
                       help="an importance.csv from `exifray importance` to chart in the report (repeatable)")
    board.add_argument("--watch", action="store_true", help="keep the tables and the report current while the sweep "
                       "runs (the page reloads itself); ends with the sweep or on Ctrl-C")
    board.add_argument("--interval", type=float, default=10.0, help="--watch: seconds between refreshes "
                       "(default: %(default)s)")
    board.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from exifray.analysis import analyse, format_summary
    from exifray.experiment import ANALYSIS_DIR, open_experiment
    from exifray.report import parse_formats, read_importance, write_analysis

    formats = parse_formats(args.format)
    importance = read_importance(args.importance)
    if args.watch:
        return _watch_leaderboard(args, formats, importance)
    experiment = open_experiment(args.experiment)
    analysis = analyse(experiment, metric=args.metric, by=args.by, top=args.top, importance=importance)
    out = args.out or experiment.files.uri.rstrip("/") + "/" + ANALYSIS_DIR
    written = write_analysis(analysis, out, formats)
    print(format_summary(analysis, k=min(args.top or 10, 10)))
    print(f"wrote {len(written)} files to {out}" + (f" (report: {out.rstrip('/')}/report.html)"
                                                     if "html" in formats else ""))
    return 0


def _watch_leaderboard(args: argparse.Namespace, formats: tuple[str, ...], importance: pd.DataFrame | None) -> int:
    from exifray.analysis import analyse
    from exifray.errors import ConfigError
    from exifray.experiment import ANALYSIS_DIR
    from exifray.experiment_files import ExperimentFiles
    from exifray.sweep_status import LOST
    from exifray.watch import watch

    if args.interval <= 0:
        raise ConfigError(f"--interval must be > 0 seconds, got {args.interval}")
    out = args.out or ExperimentFiles.at(args.experiment).uri.rstrip("/") + "/" + ANALYSIS_DIR
    print(f"watching {args.experiment} every {args.interval:g} s; report: {out.rstrip('/')}/report.html", flush=True)
    watched = watch(args.experiment, out, formats, interval_s=args.interval, say=lambda line: print(line, flush=True),
                    analyse=lambda experiment: analyse(experiment, metric=args.metric, by=args.by, top=args.top,
                                                       importance=importance))
    print(f"the sweep {watched.verdict}: {watched.finished} trials finished; final report in {out}")
    return 1 if watched.verdict == LOST else 0


def _add_evaluate(commands: Commands) -> None:
    evaluate = commands.add_parser("evaluate", help="score a bundle or final trial checkpoint on a dataset split")
    evaluate.add_argument("model", help="bundle folder (export-best) or a trial's final checkpoint folder")
    evaluate.add_argument("--data", required=True, help="dataset directory with the model's classes")
    evaluate.add_argument("--split", default="test", choices=schema.SPLITS, help="(default: test)")
    evaluate.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from exifray.bundle import evaluate, load_model

    print(json.dumps(evaluate(load_model(args.model), args.data, args.split)))
    return 0


def _add_importance(commands: Commands) -> None:
    importance = commands.add_parser("importance", help="permutation importance of EXIF tags for an EXIF-only or "
                                     "fusion model")
    importance.add_argument("model", help="bundle folder (export-best) or a trial's final checkpoint folder")
    importance.add_argument("--data", required=True, help="dataset directory with the model's classes")
    importance.add_argument("--out", required=True, help="folder for importance.csv and importance.svg")
    importance.add_argument("--permutations", type=int, default=50, help="shuffles per tag (default: %(default)s)")
    importance.add_argument("--seed", type=int, default=0, help="shuffling seed (default: %(default)s)")
    importance.add_argument("--split", default="test", choices=schema.SPLITS, help="(default: test)")
    importance.set_defaults(func=cmd_importance)


def cmd_importance(args: argparse.Namespace) -> int:
    from exifray.bundle import load_model, permutation_importance, write_importance

    frame = permutation_importance(load_model(args.model), args.data, permutations=args.permutations,
                                   seed=args.seed, split=args.split)
    written = write_importance(frame, args.out)
    print(frame[["rank", "tag", "mean_drop", "std_drop"]].to_string(index=False))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _add_backbones(commands: Commands) -> None:
    backbones = commands.add_parser("backbones", help="list the registered backbones and their specs")
    backbones.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    backbones.set_defaults(func=cmd_backbones)


def cmd_backbones(args: argparse.Namespace) -> int:
    from exifray.models.registry import get_backbone_spec, list_backbones

    rows = [get_backbone_spec(name).as_row() for name in list_backbones()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    header = ("name", "default_image_size", "min_image_size", "feature_dim", "preprocessing", "pretrained", "test_only")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[h]).ljust(w) for h, w in zip(header, widths, strict=True)))
    return 0


def _add_cache(commands: Commands) -> None:
    cache = commands.add_parser("cache", help="list or remove FEATURE CACHE entries (pooled frozen-backbone "
                                "features beside the experiments)")
    cache.add_argument("action", choices=("list", "clear"), help="list the entries, or remove them")
    cache.add_argument("--storage-path", default=None, help="where experiments live, a path or s3://... "
                       "(default: ./experiments); the cache is its feature_cache/ folder")
    cache.add_argument("--key", action="append", default=[], metavar="DIGEST",
                       help="clear: only this entry (repeatable; default: every entry)")
    cache.set_defaults(func=cmd_cache)


def cmd_cache(args: argparse.Namespace) -> int:
    from exifray.experiment import storage_uri
    from exifray.feature_cache import FeatureCache

    cache = FeatureCache.under(storage_uri(args.storage_path))
    if args.action == "clear":
        removed = cache.clear(args.key or None)
        print(f"removed {len(removed)} entries from {cache.root_uri}")
        return 0
    entries = cache.entries()
    for entry in entries:
        key = entry["key"]
        what = f"at {key['cut']}" if key.get("cut") else "pooled"  # a fine-tuning phase's activations, or features
        print(f"{entry['digest']}  {key['backbone']:<16} {key['image_size']:>4} px  {what:<24} "
              f"{key['weights'][:19]:<19} {key['precision']:<14} dataset {key['dataset_id'][:12]}  "
              f"{entry['bytes'] / 2**20:7.1f} MiB  built in {entry['build_s']:.1f} s  {entry['created']}")
    print(f"{len(entries)} entries in {cache.root_uri}")
    return 0


# --- parser ------------------------------------------------------------------------------------

_COMMANDS = (_add_synth, _add_exif, _add_ingest, _add_train, _add_crawl, _add_sweep, _add_leaderboard,
             add_export_best, _add_evaluate, _add_importance, _add_backbones, _add_cache, add_predict, add_organize,
             add_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="exifray", description="Does EXIF make an image classifier better? Crawl, ingest, "
                     "train and sweep image, EXIF and fusion classifiers on Ray.")
    parser.add_argument("--version", action="version", version=f"exifray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for add in _COMMANDS:
        add(commands)
    return parser


def configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("codecarbon", "absl", "tensorflow", "ray", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not verbose else logging.INFO)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except ExifrayError as exc:
        print(f"exifray {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILURE
    except FileNotFoundError as exc:
        print(f"exifray {args.command}: error: no such file: {exc.filename or exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"exifray {args.command}: interrupted", file=sys.stderr)
        return 130
