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
from typing import NoReturn

from exifray import __version__
from exifray.errors import ExifrayError

logger = logging.getLogger("exifray")
EXIT_USAGE, EXIT_FAILURE = 2, 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: `exifray ingest: error: ... (see --help)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _float_triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated fractions, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions train,val,test, got {text!r}")
    return values  # type: ignore[return-value]


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# --- subcommands -------------------------------------------------------------------------------

def cmd_synth(args: argparse.Namespace) -> int:
    from exifray.data.synth import SynthConfig, generate

    config = SynthConfig(scenario=args.scenario, photos=args.photos, seed=args.seed, image_size=args.image_size,
                         image_signal=args.image_signal, exif_signal=args.exif_signal, label_noise=args.label_noise)
    records = generate(args.out, config)
    print(f"synth: {len(records)} photos ({config.scenario}, seed {config.seed}) written to {args.out}")
    return 0


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


def cmd_ingest(args: argparse.Namespace) -> int:
    from exifray.config import IngestConfig
    from exifray.data.ingest import run_ingest

    config = IngestConfig(inputs=tuple(args.inputs), out=args.out, sizes=args.sizes, label_level=args.labels,
                          label_mode=args.label_mode, concepts=args.concepts, input_format=args.format,
                          split_fractions=args.split, seed=args.seed, shard_size=args.shard_size,
                          max_pixels=args.max_pixels, address=args.address, num_cpus=args.num_cpus)
    summary = run_ingest(config)
    print(summary.line())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from exifray.config import TrialConfig
    from exifray.train import run_trial

    settings = {key: getattr(args, key) for key in (
        "modality", "backbone", "weights", "image_size", "fine_tune_layers", "exif_tags", "fusion_width",
        "learning_rate", "batch_size", "epochs", "fine_tune_epochs", "dropout", "augment", "seed", "country",
        "threads") if getattr(args, key) is not None}
    if args.patience is not None:
        settings["early_stopping_patience"] = args.patience
    config = TrialConfig.from_tune(settings)
    from exifray.models.registry import get_backbone_spec

    get_backbone_spec(config.backbone)  # fail on an unknown name before loading TensorFlow
    result = run_trial(config, args.data, out_dir=args.out)
    print(json.dumps({key: result.metrics[key] for key in (
        "val_f1_macro", "test_f1_macro", "test_f1_micro", "test_accuracy", "emissions_kg", "energy_kwh",
        "train_time_s", "params", "inference_ms", "epochs")}))
    return 0


def cmd_crawl(args: argparse.Namespace) -> int:
    import asyncio

    from exifray.crawl.client import ClientConfig
    from exifray.crawl.crawler import CrawlConfig, crawl

    client = ClientConfig(api_url=args.api_url, static_url=args.static_url, concurrency=args.concurrency,
                          rate_limit=args.rate_limit, max_attempts=args.max_attempts, read_timeout_s=args.timeout,
                          backoff_initial_s=args.backoff)
    config = CrawlConfig(mode=args.mode, target=args.target, out=args.out, exif=args.exif,
                         require_tags=args.require_tags, size=args.size, per_page=args.per_page,
                         start_page=args.start_page, page_limit=args.page_limit, filter_tag=args.filter_tag,
                         labels=args.label, metadata_only=args.metadata_only, metadata_out=args.metadata_out,
                         client=client, progress_every_s=args.progress_every)
    report = asyncio.run(crawl(config, os.environ.get("FLICKR_API_KEY", "")))
    print(report.line())
    for photo_id, reason in list(report.failed.items())[:10]:
        print(f"  failed {photo_id}: {reason}")
    if len(report.failed) > 10:
        print(f"  ... {len(report.failed) - 10} more in {args.out}/crawl_report.json")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from exifray.space import load_space
    from exifray.sweep import describe, run_sweep

    space = load_space(args.space).with_overrides(num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                                                  smoke_test=args.smoke_test)
    result = run_sweep(space, args.data, name=args.name, storage_path=args.storage_path, resume=args.resume,
                       address=args.address)
    print(describe(result, space, top=args.top))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from exifray.analysis import analyse, format_summary, open_experiment, parse_formats, read_importance, \
        write_analysis

    formats = parse_formats(args.format)
    importance = read_importance(args.importance)
    experiment = open_experiment(args.experiment)
    analysis = analyse(experiment, metric=args.metric, by=args.by, top=args.top, importance=importance)
    out = args.out or experiment.files.uri.rstrip("/") + "/analysis"
    written = write_analysis(analysis, out, formats)
    print(format_summary(analysis, k=min(args.top or 10, 10)))
    print(f"wrote {len(written)} files to {out}" + (f" (report: {out.rstrip('/')}/report.html)"
                                                     if "html" in formats else ""))
    return 0


def cmd_export_best(args: argparse.Namespace) -> int:
    from exifray.bundle import export_best

    manifest = export_best(args.experiment, args.out, metric=args.metric, modality=args.modality)
    print(f"exported trial {manifest['trial_id']} ({manifest['modality']}, {manifest['selected_by']} = "
          f"{manifest['selected_value']:.4f}) to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from exifray.bundle import evaluate, load_model

    print(json.dumps(evaluate(load_model(args.model), args.data, args.split)))
    return 0


def cmd_importance(args: argparse.Namespace) -> int:
    from exifray.bundle import load_model, permutation_importance, write_importance

    frame = permutation_importance(load_model(args.model), args.data, permutations=args.permutations,
                                   seed=args.seed, split=args.split)
    written = write_importance(frame, args.out)
    print(frame[["rank", "tag", "mean_drop", "std_drop"]].to_string(index=False))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


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


# --- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="exifray", description="Does EXIF make an image classifier better? Crawl, ingest, "
                     "train and sweep image, EXIF and fusion classifiers on Ray.")
    parser.add_argument("--version", action="version", version=f"exifray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write a synthetic Flickr-shaped CRAWL DIR (demo data)")
    synth.add_argument("out", help="output crawl directory")
    synth.add_argument("--scenario", default="indoor_outdoor",
                       help="indoor_outdoor | moving_static | object_landscape (default: %(default)s)")
    synth.add_argument("--photos", type=int, default=1000, help="number of photos (default: %(default)s)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files")
    synth.add_argument("--image-size", type=int, default=160, help="rendered photo size in px (default: %(default)s)")
    synth.add_argument("--image-signal", type=float, default=0.18,
                       help="0..1, how far visual twins across super-concepts stay apart (default: %(default)s)")
    synth.add_argument("--exif-signal", type=float, default=0.45,
                       help="0..1, how far per-class EXIF distributions sit from the pooled one (default: %(default)s)")
    synth.add_argument("--label-noise", type=float, default=0.05, help="share of wrong labels (default: %(default)s)")
    synth.set_defaults(func=cmd_synth)

    exif = commands.add_parser("exif", help="print the catalogue EXIF of JPEGs, getExif JSON or MIRFLICKR txt files")
    exif.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    exif.set_defaults(func=cmd_exif)

    ingest = commands.add_parser("ingest", help="decode photos and EXIF once into a Parquet DATASET DIR (Ray Data)")
    ingest.add_argument("inputs", nargs="+", help="crawl dirs (or thesis / MIRFLICKR / label-folder layouts)")
    ingest.add_argument("--out", required=True, help="dataset directory to write (replaced atomically)")
    ingest.add_argument("--sizes", type=_int_list, default=(50, 150), help="image sizes in px (default: 50,150)")
    ingest.add_argument("--labels", choices=("super", "sub"), default="super", help="class level (default: super)")
    ingest.add_argument("--label-mode", choices=("auto", "single", "multi"), default="auto",
                        help="single-label (softmax) or multi-label (sigmoid); auto: multi when a photo has "
                             "several classes (default: auto)")
    ingest.add_argument("--concepts", type=_str_list, default=(), help="keep only these classes, comma-separated")
    ingest.add_argument("--format", choices=("auto", "crawl", "thesis", "mirflickr", "folder"), default="auto",
                        help="input layout (default: auto-detect)")
    ingest.add_argument("--split", type=_float_triple, default=(0.7, 0.2, 0.1),
                        help="train,val,test fractions (default: 0.7,0.2,0.1)")
    ingest.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    ingest.add_argument("--shard-size", type=int, default=512, help="photos per Parquet shard (default: %(default)s)")
    ingest.add_argument("--max-pixels", type=int, default=50_000_000,
                        help="reject larger images as decompression bombs (default: %(default)s)")
    ingest.add_argument("--address", default=None, help="Ray cluster address (default: start Ray in-process)")
    ingest.add_argument("--num-cpus", type=int, default=None, help="CPUs for an in-process Ray (default: all)")
    ingest.set_defaults(func=cmd_ingest)

    train = commands.add_parser("train", help="train and evaluate one configuration (the sweep's trial function)")
    train.add_argument("--data", required=True, help="dataset directory from `exifray ingest`")
    train.add_argument("--out", required=True, help="where model.keras, metrics.json, settings.json go")
    train.add_argument("--modality", choices=("image", "exif", "fusion"), default=None, help="default: fusion")
    train.add_argument("--backbone", default=None, help="registered backbone (see `exifray backbones`)")
    train.add_argument("--weights", default=None, help="auto | imagenet | none | PATH to a weights file")
    train.add_argument("--image-size", type=int, default=None, help="one of the dataset's sizes (default: first)")
    train.add_argument("--fine-tune-layers", type=int, default=None, help="top backbone layers unfrozen in phase 2")
    train.add_argument("--exif-tags", type=_str_list, default=None, help="comma-separated tags (default: all 14)")
    train.add_argument("--fusion-width", type=int, default=None, help="fusion projection width (default: 64)")
    train.add_argument("--learning-rate", type=float, default=None, help="phase-1 learning rate (default: 1e-3)")
    train.add_argument("--batch-size", type=int, default=None, help="default: 32")
    train.add_argument("--epochs", type=int, default=None, help="phase-1 epochs (default: 10)")
    train.add_argument("--fine-tune-epochs", type=int, default=None, help="phase-2 epochs (default: 5)")
    train.add_argument("--dropout", type=float, default=None, help="default: 0.2")
    train.add_argument("--augment", action="store_const", const=True, default=None, help="flip/rotate/translate")
    train.add_argument("--patience", type=int, default=None, help="early-stopping patience on val_loss (default: 3)")
    train.add_argument("--seed", type=int, default=None, help="default: 0")
    train.add_argument("--country", default=None, help="ISO alpha-3 country for CodeCarbon (default: DEU)")
    train.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: TF's choice)")
    train.set_defaults(func=cmd_train)

    crawl = commands.add_parser("crawl", help="download photos and EXIF from Flickr into a CRAWL DIR (key: "
                                "FLICKR_API_KEY)")
    crawl.add_argument("mode", choices=("group", "search", "photos"), help="a group pool, a text search, or a "
                       "thesis metadata file")
    crawl.add_argument("target", help="GROUP_ID, search TEXT, or METADATA.json")
    crawl.add_argument("--out", required=True, help="crawl directory (re-runs resume)")
    crawl.add_argument("--exif", action="store_true", help="also save flickr.photos.getExif bodies")
    crawl.add_argument("--require-tags", type=_str_list, default=(), help="keep only photos whose EXIF has all "
                       "these tags (needs --exif)")
    crawl.add_argument("--size", default="", help="Flickr size key: s q t m n w z c b h k 3k 4k f 5k 6k o "
                       "(default: empty = 500 px)")
    crawl.add_argument("--per-page", type=int, default=100, help="photos per listing page, max 500 (default: 100)")
    crawl.add_argument("--start-page", type=int, default=1, help="first listing page (default: 1)")
    crawl.add_argument("--page-limit", type=int, default=None, help="listing pages to read (default: all)")
    crawl.add_argument("--filter-tag", default=None, help="group mode: only photos with this tag")
    crawl.add_argument("--label", type=_str_list, default=(), help="labels for group/search photos and "
                       "list metadata files, comma-separated (e.g. indoor,kitchen; default for a list file: its "
                       "name, as in the thesis' indoor,kitchen.json)")
    crawl.add_argument("--metadata-only", action="store_true", help="write the id list, download nothing")
    crawl.add_argument("--metadata-out", default=None, help="with --metadata-only: the thesis-format JSON file")
    crawl.add_argument("--concurrency", type=int, default=8, help="open connections (default: 8)")
    crawl.add_argument("--rate-limit", type=float, default=3500, help="requests per hour (default: 3500; Flickr "
                       "allows 3600 per key)")
    crawl.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress log lines "
                       "when stderr is not a terminal (a terminal gets a progress bar; default: %(default)s)")
    crawl.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for data on a connection "
                       "before retrying (default: %(default)s)")
    crawl.add_argument("--max-attempts", type=int, default=5, help="tries per request before giving up (default: 5)")
    crawl.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubled per "
                       "attempt with jitter, at most 60; a 429's Retry-After wins when longer (default: %(default)s)")
    crawl.add_argument("--api-url", default="https://www.flickr.com/services/rest/", help="REST endpoint")
    crawl.add_argument("--static-url", default="https://live.staticflickr.com", help="image host")
    crawl.set_defaults(func=cmd_crawl)

    sweep = commands.add_parser("sweep", help="search hyperparameters with Ray Tune + Optuna over a search space file")
    sweep.add_argument("--space", required=True, help="search space YAML (see search_spaces/README.md)")
    sweep.add_argument("--data", required=True, help="dataset directory from `exifray ingest`")
    sweep.add_argument("--name", default=None, help="experiment name (default: the file's `name`)")
    sweep.add_argument("--storage-path", default=None,
                       help="where experiments live: a path, s3://... or gs://... (default: ./experiments)")
    sweep.add_argument("--num-samples", type=int, default=None, help="trials to run (overrides the file)")
    sweep.add_argument("--max-concurrent", type=int, default=None, help="trials at a time (overrides the file)")
    sweep.add_argument("--resume", action="store_true",
                       help="continue the experiment of the same name after the driver stopped or was killed")
    sweep.add_argument("--smoke-test", action="store_true",
                       help="one tiny trial of the file's code path (1 epoch per phase, TestTinyCNN, no weights)")
    sweep.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or in-process)")
    sweep.add_argument("--top", type=int, default=10, help="leaderboard rows to print at the end (default: 10)")
    sweep.set_defaults(func=cmd_sweep)

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
    board.add_argument("--by", default="modality", choices=("modality", "backbone", "image_size"),
                       help="the grouped table's key (default: %(default)s)")
    board.add_argument("--importance", action="append", default=[], metavar="CSV",
                       help="an importance.csv from `exifray importance` to chart in the report (repeatable)")
    board.set_defaults(func=cmd_leaderboard)

    export = commands.add_parser("export-best", help="the best trial's model as a self-contained bundle")
    export.add_argument("experiment", help="experiment directory, local or s3://...")
    export.add_argument("--out", required=True, help="new folder for the bundle")
    export.add_argument("--metric", default=None, help="select by this column (default: the sweep's metric)")
    export.add_argument("--modality", default=None, choices=("image", "exif", "fusion"),
                        help="the best trial of this modality only")
    export.set_defaults(func=cmd_export_best)

    evaluate = commands.add_parser("evaluate", help="score a bundle or final trial checkpoint on a dataset split")
    evaluate.add_argument("model", help="bundle folder (export-best) or a trial's final checkpoint folder")
    evaluate.add_argument("--data", required=True, help="dataset directory with the model's classes")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"), help="(default: test)")
    evaluate.set_defaults(func=cmd_evaluate)

    importance = commands.add_parser("importance", help="permutation importance of EXIF tags for an EXIF-only or "
                                     "fusion model")
    importance.add_argument("model", help="bundle folder (export-best) or a trial's final checkpoint folder")
    importance.add_argument("--data", required=True, help="dataset directory with the model's classes")
    importance.add_argument("--out", required=True, help="folder for importance.csv and importance.svg")
    importance.add_argument("--permutations", type=int, default=50, help="shuffles per tag (default: %(default)s)")
    importance.add_argument("--seed", type=int, default=0, help="shuffling seed (default: %(default)s)")
    importance.add_argument("--split", default="test", choices=("train", "val", "test"), help="(default: test)")
    importance.set_defaults(func=cmd_importance)

    backbones = commands.add_parser("backbones", help="list the registered backbones and their specs")
    backbones.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    backbones.set_defaults(func=cmd_backbones)
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
