"""The commands that use models: export-best (a bundle, registered in MLflow on request), predict, organize, serve."""

from __future__ import annotations

import argparse
import json

from exifray import schema
from exifray.cli_args import Commands
from exifray.errors import ConfigError
from exifray.predict import FORMATS
from exifray.tagging import PolicyFlags


def add_policy_flags(parser: argparse.ArgumentParser) -> None:
    """The tag policy's flags (`exifray.tagging`), the same for predict, organize and serve."""
    group = parser.add_argument_group("choosing tags")
    group.add_argument("--threshold", default=None,
                       help="multi-label models: a probability in [0, 1] (default 0.1) or 'calibrated' (the per-class "
                            "thresholds fitted on the validation split)")
    group.add_argument("--top-k", type=int, default=None, help="multi-label models: at most this many tags per photo")
    group.add_argument("--policy", default=None, choices=("scene", "top1"),
                       help="single-label models: 'scene' (default: top-1 above 0.9 alone, else top two above 0.5 "
                            "together, else Unknown) or 'top1'")
    group.add_argument("--min-confidence", type=float, default=None, help="--policy top1: Unknown below this")
    group.add_argument("--scene-single", type=float, default=0.9,
                       help="--policy scene: the top class alone above this probability (default: %(default)s)")
    group.add_argument("--scene-pair", type=float, default=0.5,
                       help="--policy scene: else the top two when together above this (default: %(default)s)")


def policy_flags(args: argparse.Namespace) -> PolicyFlags:
    return {"policy": args.policy, "threshold": args.threshold, "top_k": args.top_k,
            "min_confidence": args.min_confidence, "single": args.scene_single, "pair": args.scene_pair}


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else start Ray "
                                                        "in-process)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for an in-process Ray (default: all)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="model actors (one GPU each on a GPU cluster, else one CPU each) (default: %(default)s)")


def add_predict(commands: Commands) -> None:
    predict = commands.add_parser("predict", help="tag photos (folders, files, s3:// prefixes) with a bundle")
    predict.add_argument("bundle", help="bundle folder (export-best), local or s3://")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="photo folders (recursive), files or s3:// prefixes")
    predict.add_argument("--out", required=True, help="JSONL (or CSV) file, local or s3://; re-runs skip photos "
                                                      "already in it")
    predict.add_argument("--format", default=None, choices=FORMATS, help="(default: from --out's suffix, else jsonl)")
    predict.add_argument("--force", action="store_true", help="predict every photo again")
    predict.add_argument("--batch-size", type=int, default=32, help="photos per batch (default: %(default)s)")
    _add_cluster_flags(predict)
    add_policy_flags(predict)
    predict.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from exifray.predict import predict, ray_session

    with ray_session(args.address, args.num_cpus):
        summary = predict(args.bundle, args.inputs, args.out, force=args.force, concurrency=args.concurrency,
                          batch_size=args.batch_size, output_format=args.format, policy_flags=policy_flags(args))
    print(f"{len(summary.rows)} photos -> {args.out}: {summary.predicted} predicted "
          f"({summary.photos_per_second:.1f} photos/s), {summary.skipped} already there, {summary.errors} unreadable")
    return 0


def add_organize(commands: Commands) -> None:
    organize = commands.add_parser("organize", help="sort photos into album folders named after the classes")
    organize.add_argument("bundle", nargs="?", help="bundle folder (export-best), local or s3://")
    organize.add_argument("sources", nargs="*", metavar="SRC", help="photo folders (recursive) or files")
    organize.add_argument("--out", default=None, help="the ALBUMS folder")
    organize.add_argument("--mode", default="copy", choices=("copy", "symlink", "hardlink"),
                          help="how a photo gets into its albums (default: %(default)s); the source is never moved")
    organize.add_argument("--dry-run", action="store_true", help="print what would be placed; write nothing")
    organize.add_argument("--undo", metavar="ALBUMS", default=None,
                          help="remove what organize created in ALBUMS (no other arguments)")
    _add_cluster_flags(organize)
    add_policy_flags(organize)
    organize.set_defaults(func=cmd_organize)


def cmd_organize(args: argparse.Namespace) -> int:
    from exifray.organize import organize, undo
    from exifray.predict import ray_session

    if args.undo is not None:
        if args.bundle or args.sources or args.out:
            raise ConfigError("--undo ALBUMS takes no other arguments")
        done = undo(args.undo)
        print(f"removed {len(done.removed)} placed files from {args.undo}; {len(done.missing)} were already gone")
        for path in done.kept_changed:
            print(f"kept {path}: changed since organize placed it")
        return 0
    if not args.bundle or not args.sources or not args.out:
        raise ConfigError("organize needs BUNDLE, at least one SRC and --out ALBUMS (or --undo ALBUMS)")
    with ray_session(args.address, args.num_cpus):
        summary = organize(args.bundle, args.sources, args.out, mode=args.mode, dry_run=args.dry_run,
                           policy_flags=policy_flags(args), concurrency=args.concurrency)
    verb = "would place" if args.dry_run else "placed"
    if args.dry_run:
        for placement in summary.placed:
            print(f"would place {placement.source} -> {placement.relative}")
    for row in summary.errors:
        print(f"not readable: {row['source']}: {row['error']}")
    print(f"{summary.photos} photos: {verb} {len(summary.placed)} files, {summary.unchanged} already placed, "
          f"{len(summary.errors)} unreadable; albums {json.dumps(summary.albums)}")
    return 0


def add_serve(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="a REST API (Ray Serve) and an albums page for tagging photos")
    serve.add_argument("bundle", help="bundle folder (export-best), local or s3://")
    serve.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    serve.add_argument("--replicas", type=int, default=1, help="model replicas, one CPU each (default: %(default)s)")
    serve.add_argument("--max-batch-size", type=int, default=16,
                       help="images per model call, across requests (default: %(default)s)")
    serve.add_argument("--batch-wait-timeout-s", type=float, default=0.05,
                       help="how long a batch waits to fill (default: %(default)s)")
    serve.add_argument("--max-images", type=int, default=64, help="images per request (default: %(default)s)")
    serve.add_argument("--max-request-mb", type=float, default=32.0, help="request size (default: %(default)s)")
    serve.add_argument("--api-key-env", default=None, metavar="NAME",
                       help="require the key in this environment variable as X-API-Key (every route but /healthz and "
                            "the page, which asks for it)")
    serve.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else start Ray "
                                                       "in-process)")
    serve.add_argument("--num-cpus", type=int, default=None, help="CPUs for an in-process Ray (default: all)")
    add_policy_flags(serve)
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from ray import serve as ray_serve

    from exifray.predict import ray_session
    from exifray.serve import ServeConfig, build_app, check_resources

    flags = {"bundle": args.bundle, "max_batch_size": args.max_batch_size, "replicas": args.replicas,
             "batch_wait_timeout_s": args.batch_wait_timeout_s, "max_images": args.max_images,
             "max_request_mb": args.max_request_mb, "policy": policy_flags(args)}
    if args.api_key_env:
        flags["api_key_env"] = args.api_key_env
    application = build_app(flags)  # checks the flags (and the key's variable) before Ray starts
    stop = threading.Event()
    with ray_session(args.address, args.num_cpus):
        check_resources(ServeConfig(bundle=args.bundle, replicas=args.replicas))
        ray_serve.start(http_options={"host": args.host, "port": args.port})
        ray_serve.run(application, name="exifray", route_prefix="/", blocking=False)
        print(f"exifray serve: {args.bundle} at http://{args.host}:{args.port}/ (API docs: /docs); Ctrl-C stops",
              flush=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        try:
            stop.wait()
        finally:
            ray_serve.shutdown()
    print("exifray serve: stopped", flush=True)
    return 0


def add_export_best(commands: Commands) -> None:
    export = commands.add_parser("export-best", help="the best trial's model as a self-contained bundle")
    export.add_argument("experiment", help="experiment directory, local or s3://...")
    export.add_argument("--out", required=True, help="new folder for the bundle")
    export.add_argument("--metric", default=None, help="select by this column (default: the sweep's metric)")
    export.add_argument("--modality", default=None, choices=schema.MODALITIES,
                        help="the best trial of this modality only")
    export.add_argument("--max-inference-ms", type=float, default=None,
                        help="the best model whose latency per photo, re-measured on this machine, is within this")
    export.add_argument("--candidates", type=int, default=5, help="how many of the best trials --max-inference-ms "
                                                                  "measures at most")
    export.add_argument("--data", default=None, help="the DATASET DIR the sweep used: a multi-label model's "
                                                     "per-class thresholds are fitted again on its val split")
    export.add_argument("--mlflow-register", default=None, metavar="NAME", help="also register the bundle in MLflow's "
                        "model registry as a new version of NAME: a pyfunc that decodes and tags photos as "
                        "`exifray predict` does (needs exifray[mlflow])")
    export.add_argument("--mlflow", default=None, metavar="URI", help="--mlflow-register's tracking URI (default: "
                        "MLFLOW_TRACKING_URI)")
    export.set_defaults(func=cmd_export_best)


def cmd_export_best(args: argparse.Namespace) -> int:
    from exifray.bundle import export_best
    from exifray.tracking import Tracking

    if args.mlflow_register is not None:
        Tracking(mlflow=args.mlflow or "").checked()  # the extra and a URI, before anything is exported
    manifest = export_best(args.experiment, args.out, metric=args.metric, modality=args.modality, data=args.data,
                           max_inference_ms=args.max_inference_ms, candidates=args.candidates)
    print(f"exported trial {manifest['trial_id']} ({manifest['modality']}, {manifest['selected_by']} = "
          f"{manifest['selected_value']:.4f}) to {args.out}")
    if args.mlflow_register is not None:
        from exifray.mlflow_model import register_bundle

        info = register_bundle(args.out, args.mlflow_register, args.experiment, uri=args.mlflow)
        print(f"registered in MLflow as {args.mlflow_register} version {info.registered_model_version} "
              f"({info.model_uri})")
    return 0
