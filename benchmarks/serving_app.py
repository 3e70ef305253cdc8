"""The two servers the serving benchmark compares, run the same way (uvicorn, 1
worker, uvloop, httptools, no access log): ``bare`` is a FastAPI JSON endpoint that
does nothing; ``api`` is segstream's app with a model loaded from a directory (and a churn model
from another with ``--churn-dir``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from segstream.app.loadtest import bare_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["bare", "api"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--churn-dir", type=Path, help="also serve this churn model")
    parser.add_argument("--redis-url")
    parser.add_argument("--redis-cluster", action="store_true")
    parser.add_argument("--redis-client", default="auto")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/segstream-bench"))
    args = parser.parse_args()
    if args.kind == "bare":
        app = bare_app()
    else:
        from segstream.config import Settings
        from segstream.core.segment_model import SegmentModel
        from segstream.serving.app import create_app
        from segstream.serving.model_source import StaticSource

        settings = Settings(redis_url=args.redis_url, redis_cluster=args.redis_cluster,
                            data_dir=args.data_dir,
                            api_keys=["bench-key-123456"], api_model_poll_s=60)
        churn = None
        if args.churn_dir is not None:
            from segstream.core.churn_model import ChurnModel
            from segstream.serving.churn import StaticChurnSource

            churn = StaticChurnSource(ChurnModel.load(args.churn_dir), "1")
        app = create_app(settings, StaticSource(SegmentModel.load(args.model_dir), "1"),
                         churn, redis_client=args.redis_client)
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()


def api_from_env() -> object:
    """The API of ``--kind api`` for servers started by an import string (several
    workers, granian): settings from ``SEGSTREAM_*``, the model from
    ``BENCH_MODEL_DIR`` (``benchmarks/serving_servers.py``)."""
    import os

    from segstream.config import Settings
    from segstream.core.segment_model import SegmentModel
    from segstream.serving.app import create_app
    from segstream.serving.model_source import StaticSource

    model = SegmentModel.load(Path(os.environ["BENCH_MODEL_DIR"]))
    return create_app(Settings(), StaticSource(model, "1"))
