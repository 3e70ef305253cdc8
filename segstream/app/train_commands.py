"""``segstream train | update | evaluate | report | models ...`` (registered by
``segstream.app.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from segstream.core.times import format_time

console = Console()
FROM_HELP = ("A features file (`segstream features --out`), the Parquet history directory "
             "(or one of its files), or `features-topic` to read the features topic.")
AS_OF_HELP = ("Snapshot time (ISO-8601, or epoch s/ms/µs): every user's newest record with "
              "last_event_ms <= it, evaluated at it. For the history and the topic; default: "
              "the newest event time read (the stream time). A features file is evaluated "
              "at its own as_of already: another one is refused.")


def _settings() -> Any:
    from segstream.app.console import load_settings

    return load_settings()


Kind = Annotated[str, typer.Option(
    "--kind", help="Which model: segments (the segment model) or churn (churn risk).")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    from segstream.app.console import fail

    return fail(message, code)


def _bootstrap(settings: Any) -> str:
    if settings.kafka_bootstrap:
        return str(settings.kafka_bootstrap)
    from segstream.adapters.endpoints import endpoints

    return str(endpoints(settings).kafka_bootstrap)


def load_table(settings: Any, source: str, as_of: str | None = None) -> Any:
    """The training table of ``source`` as of ``as_of`` (see segstream.training.data)."""
    from segstream.app.console import as_of_option
    from segstream.core.contract import FeatureSpecMismatch
    from segstream.training.data import read_table, table_from_messages

    as_of_ms = as_of_option(as_of)
    params = settings.feature_params()
    try:
        if source == "features-topic":
            from segstream.adapters.topic_reader import read_topic

            with console.status(f"reading {settings.topic_features}..."):
                messages = [(r.key, r.value) for r in read_topic(_bootstrap(settings),
                                                                 settings.topic_features)]
            return table_from_messages(messages, params, settings.topic_features, as_of_ms)
        return read_table(Path(source), params, as_of_ms)
    except (FileNotFoundError, ValueError, FeatureSpecMismatch) as exc:
        raise _fail(str(exc)) from exc


def segment_table(model: Any, title: str) -> Table:
    """Each segment's persona and its members' KPIs (medians, in their units)."""
    table = Table("id", "persona", "share", "bought", "buyers: orders, spend, per order",
                  "days since visit", "top RFM group", title=title,
                  caption="medians of the members (purchase figures: of those who bought)")
    table.columns[1].no_wrap = True

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for p, name in zip(model.profiles, model.personas, strict=True):
        k = p["kpis"]
        group, n = max(p["rfm_groups"].items(), key=lambda kv: kv[1])
        buyers = ("-" if k["median_orders"] is None else
                  f"{num(k['median_orders'], 'g')}, {num(k['median_spend'], ',.0f')}, "
                  f"{num(k['median_order_value'], ',.2f')}")
        table.add_row(str(p["segment_id"]), name, f"{p['share']:.0%}",
                      f"{k['buyer_share']:.0%}", buyers,
                      num(k["median_days_since_visit"], ".1f"),
                      f"{group} {n / max(p['size'], 1):.0%}")
    return table


def train_and_publish(settings: Any, table: Any, k: str, *, promote: bool,
                      out: Console = console) -> Any:
    """Shared by `segstream train` and the demo step; returns the Published result."""
    from segstream.adapters.registry import Registry
    from segstream.training.fit import fit_model
    from segstream.training.pipeline import (
        champion_or_none,
        next_segment_id,
        publish,
        same_features,
    )
    from segstream.training.profiles import read_overrides
    from segstream.training.selection import select_k

    if k == "auto":
        ks = range(settings.train_k_min, settings.train_k_max + 1)
        with out.status(f"k selection over {ks.start}..{ks.stop - 1} on {len(table):,} rows"):
            sel = select_k(table.X, ks, seed=settings.random_seed)
        t = Table("k", "stability", "stability_ari", "silhouette", "calinski_harabasz",
                  "davies_bouldin", "inertia", "min_share",
                  title=f"k selection (each k in its own within-segment scaling, "
                        f"{int(sel.rows[0]['rows']):,} rows)",
                  caption="stability: the weakest segment's mean Jaccard against refits on "
                          f"random halves; stable at >= {sel.threshold:g}")
        for r in sel.rows:
            mark = " *" if r["stability"] >= sel.threshold else ""
            t.add_row(str(int(r["k"])), f"{r['stability']:.3f}{mark}", f"{r['stability_ari']:.3f}",
                      f"{r['silhouette']:.4f}", f"{r['calinski_harabasz']:.1f}",
                      f"{r['davies_bouldin']:.4f}", f"{r['inertia']:.1f}", f"{r['min_share']:.3f}")
        out.print(t)
        out.print(f"votes: {sel.votes} -> k = {sel.best_k} ({sel.rule}; the other criteria are "
                  "shown, the stability decides)")
        n_clusters = sel.best_k
        selection = sel.rows
    else:
        n_clusters = int(k)
        selection = []
    registry = Registry(settings)
    champion = champion_or_none(registry)
    parent = champion
    if champion is not None and not same_features(champion, settings.feature_params(
            ).fingerprint):
        out.print(f"champion {champion.version} was fitted on other features (spec or feature "
                  "params): new segment ids, not matched to it")
        parent = None
    with out.status(f"fitting k={n_clusters} on {len(table):,} rows"):
        model = fit_model(table, n_clusters, seed=settings.random_seed, parent=parent,
                          next_id=next_segment_id(registry), kind="bootstrap",
                          overrides=read_overrides(settings.persona_overrides_file))
    if selection:
        model.info["k_selection"] = selection
    result = publish(registry, model, table.X, settings, champion=champion, kind="bootstrap",
                     promote=promote)
    return result


def _print_published(updater: Any) -> None:
    for p in updater.published:
        console.print(f"version {p.version} ({p.model.info['kind']}): {p.gate.summary()}"
                      + ("  -> champion" if p.promoted else ""))


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(help="List, inspect, promote and roll back registered models.",
                             no_args_is_help=True)
    app.add_typer(models_app, name="models")

    @app.command("train")
    def train(
        source: Annotated[str, typer.Option("--from", help=FROM_HELP)],
        k: Annotated[str, typer.Option(help="`auto` (the largest k whose every segment is "
                                       "stable under refits on random halves of the users) "
                                       "or a number.")] = "auto",
        promote: Annotated[bool, typer.Option(help="Make it champion if it passes the gates.")
                           ] = True,
        as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    ) -> None:
        """Bootstrap fit on a snapshot of every user as of a time; register in MLflow;
        promote through the gates."""
        if k != "auto" and not k.isdigit():
            raise _fail(f"--k must be `auto` or a number, got {k!r}")
        settings = _settings()
        table = load_table(settings, source, as_of)
        from segstream.adapters.registry import RegistryError

        try:
            result = train_and_publish(settings, table, k, promote=promote)
        except RegistryError as exc:
            raise _fail(str(exc)) from exc
        console.print(segment_table(
            result.model, f"version {result.version}: {len(table):,} users as of "
            f"{format_time(table.as_of_ms, 'seconds')}, feature params "
            f"{table.feature_params['fingerprint']:08x}"))
        m = result.model.metrics
        console.print(f"silhouette {m['silhouette']:.4f}  davies-bouldin "
                      f"{m['davies_bouldin']:.4f}  rows {len(table):,}")
        console.print(f"gates: {result.gate.summary()}; "
                      + ("[green]champion[/green]" if result.promoted else "not promoted"))
        if not result.gate.passed:
            raise typer.Exit(3)

    @app.command("update")
    def update(
        once: Annotated[bool, typer.Option(help="Consume up to the current end, publish, exit."
                                           )] = False,
    ) -> None:
        """Follow the features topic: decayed partial_fit, candidates every N rows / T minutes,
        drift-triggered refits, all through the quality gates."""
        from segstream.adapters.kafka import KafkaUnavailable
        from segstream.adapters.registry import Registry, RegistryError
        from segstream.training.feed import consume
        from segstream.training.profiles import read_overrides
        from segstream.training.update import Updater

        settings = _settings()
        registry = Registry(settings)
        try:
            parent = registry.load("champion")
            updater = Updater(settings, registry, parent,
                              overrides=read_overrides(settings.persona_overrides_file))
        except (RegistryError, ValueError) as exc:
            raise _fail(str(exc)) from exc
        console.print(f"updating from champion {parent.version} (k={parent.k}) on "
                      f"{settings.topic_features}" + (" until its current end" if once else ""))
        try:
            read = consume(settings, updater, once=once, bootstrap=_bootstrap(settings),
                           on_batch=lambda n: console.print(f"  +{n:,} rows", end="\r"))
            champion = registry.champion_version()
        except (KafkaUnavailable, ValueError) as exc:  # ValueError: records of other params
            raise _fail(str(exc)) from exc
        except RegistryError as exc:  # the registry went away while publishing
            _print_published(updater)
            raise _fail(f"{exc}. Offsets are saved only after a published candidate: a "
                        "rerun reads again from the last one, nothing is lost") from exc
        except KeyboardInterrupt:
            read = updater.rows_seen
            champion = None
        _print_published(updater)
        console.print(f"read {read:,} messages" + (
            f"; champion is {champion}" if champion is not None else ""))

    @app.command("evaluate")
    def evaluate(
        source: Annotated[str, typer.Option("--from", help=FROM_HELP)],
        k: Annotated[int, typer.Option(help="Clusters for the k-based algorithms.")] = 7,
        truth: Annotated[Path | None, typer.Option(
            help="Ground truth CSV (`segstream generate --truth`) for ARI.")] = None,
        after_drift: Annotated[bool, typer.Option(
            help="Compare with the truth's post-drift persona.")] = False,
        out: Annotated[Path, typer.Option(help="Markdown table to write.")] = Path(
            "evaluation.md"),
        sample: Annotated[int, typer.Option(help="Rows for HDBSCAN/Ward (O(n²)).")] = 5000,
        as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    ) -> None:
        """Compare MiniBatchKMeans, GaussianMixture, HDBSCAN and Ward on the same features."""
        import numpy as np

        from segstream.training.data import read_truth
        from segstream.training.evaluate import compare, markdown
        from segstream.training.preprocess import fit_preprocessor
        from segstream.training.scaling import within_scaled

        settings = _settings()
        table = load_table(settings, source, as_of)
        labels = None
        if truth is not None:
            t = read_truth(truth)
            missing = [u for u in table.user_ids if u not in t]
            if missing:
                raise _fail(f"{len(missing)} users (e.g. {missing[0]}) are not in {truth}")
            labels = np.array([t[u][1 if after_drift else 0] for u in table.user_ids])
        spaces = {"robust": fit_preprocessor(table.X),
                  "within-segment": within_scaled(table.X, k, seed=settings.random_seed)[0]}
        rows = []
        with console.status("evaluating...") as status:
            for scaling, pre in spaces.items():
                def progress(name: str, scaling: str = scaling) -> None:
                    status.update(f"evaluating {name} ({scaling} scaling)...")

                for row in compare(pre.transform(table.X), k, truth=labels,
                                   seed=settings.random_seed, sample=sample, progress=progress):
                    rows.append({"scaling": scaling, **row})
        text = markdown(rows)
        out.write_text(f"# Clustering comparison\n\n{len(table):,} users from {source}, "
                       f"k={k}\n\n{text}")
        console.print(text)
        console.print(f"wrote {out}")

    @app.command("report")
    def report(
        out: Annotated[Path, typer.Option(help="Directory for index.html.")] = Path("report"),
        version: Annotated[str, typer.Option(help="Version or alias to report on.")
                           ] = "champion",
        source: Annotated[str | None, typer.Option(
            "--from", help="The users to report on: " + FROM_HELP + " Default: the Parquet "
            "history (<data_dir>/history/features).")] = None,
        as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
        since: Annotated[str | None, typer.Option(
            help="The earlier time of the migration over time (the forms of --as-of); "
                 "default: 7 days before the snapshot. The Parquet history only.")] = None,
        compare: Annotated[str | None, typer.Option(
            help="Version to compare with on the same users; default: the registered "
                 "version before the reported one.")] = None,
        points: Annotated[int, typer.Option(
            help="At most this many users (a random sample) in the PCA/UMAP plots.")] = 2000,
    ) -> None:
        """Write a self-contained HTML report (plots embedded) of a model version and the
        real users of one snapshot: members' KPIs, radar charts, RFM grid, PCA, migrations."""
        from segstream.adapters.registry import Registry, RegistryError
        from segstream.app.console import as_of_option
        from segstream.core.contract import FeatureSpecMismatch
        from segstream.training.data import read_table
        from segstream.training.pipeline import same_features
        from segstream.training.report import Inputs, write_report

        settings = _settings()
        history = settings.history_dir
        if source is None and not (history.is_dir() and any(history.rglob("*.parquet"))):
            raise _fail(
                f"no Parquet history in {history}: the report draws real users only, from the "
                "history by default. Run `segstream stream` (or `segstream demo`) to write it, "
                "or pass --from FEATURES.parquet (`segstream features --out`)")
        since_ms = as_of_option(since, "--since")
        fingerprint = settings.feature_params().fingerprint
        registry = Registry(settings)
        try:
            model = registry.load(version)
            versions = registry.versions()
            model.check_spec()
        except (RegistryError, ValueError, FeatureSpecMismatch) as exc:
            raise _fail(str(exc)) from exc
        table = load_table(settings, source or str(history), as_of)
        notes: dict[str, str] = {}
        if not same_features(model, fingerprint):
            notes["warning"] = (f"Version {model.version} was fitted on features of other "
                                "params than these users' (this process's settings): serving "
                                "would refuse it, and its assignments here are approximate.")
        previous = None
        older = [v.version for v in versions if int(v.version) < int(model.version or 0)]
        other = compare or (max(older, key=int) if older else None)
        if other is None:
            notes["versions"] = f"Version {model.version} is the first registered version."
        else:
            try:
                previous = registry.load(other)
            except RegistryError as exc:
                raise _fail(str(exc)) from exc
            if not same_features(previous, fingerprint):
                notes["versions"] = (f"Version {previous.version} was fitted on other features "
                                     "(spec or params): not comparable on these users.")
                previous = None
        earlier = None
        if source == "features-topic":
            notes["times"] = "The migration over time needs the Parquet history (--from)."
        elif table.as_of_ms is not None:
            t1 = since_ms if since_ms is not None else table.as_of_ms - 7 * 86_400_000
            if t1 >= table.as_of_ms:
                raise _fail(f"--since {format_time(t1, 'seconds')} is not before the snapshot "
                            f"as of {format_time(table.as_of_ms, 'seconds')}", 2)
            try:
                earlier = read_table(Path(source or history), settings.feature_params(), t1)
            except (ValueError, FeatureSpecMismatch) as exc:
                notes["times"] = f"No migration over time: {exc}."
        churn = _churn_champion(settings, fingerprint, notes)
        with console.status("rendering plots..."):
            written = write_report(out, Inputs(model, table, versions, previous, earlier,
                                               churn, notes),
                                   seed=settings.random_seed, max_points=points)
        console.print(f"wrote {written.path}: {written.users:,} users as of "
                      f"{format_time(table.as_of_ms or 0, 'seconds')}, {len(written.plotted):,} "
                      f"in the PCA; {', '.join(written.figures)}")

    def _churn_champion(settings: Any, fingerprint: int, notes: dict[str, str]) -> Any:
        """The churn champion for the report's churn section, or None with the reason
        in ``notes["churn"]``."""
        from segstream.adapters.registry import ChurnRegistry, RegistryError
        from segstream.core.contract import FeatureSpecMismatch

        try:
            churn = ChurnRegistry(settings).load()
            churn.check_spec()
            churn.check(fingerprint)
        except (RegistryError, LookupError) as exc:
            notes["churn"] = (f"No churn model: {exc}. `segstream churn train` fits one on "
                              "the history.")
            return None
        except (ValueError, FeatureSpecMismatch) as exc:
            notes["churn"] = f"The churn champion does not fit these users' features: {exc}."
            return None
        return churn

    @models_app.command("list")
    def models_list() -> None:
        """Every registered version of both kinds (segments, churn risk), newest first,
        with its gate result."""
        from segstream.adapters.registry import ChurnRegistry, Registry, RegistryError

        registry, churn = Registry(_settings()), ChurnRegistry(_settings())
        t = Table("version", "alias", "kind", "k", "rows", "silhouette", "gate", "parent",
                  title=f"{registry.name} @ {registry.safe_uri}")
        c = Table("version", "alias", "label", "rows", "ROC AUC", "Brier", "gate",
                  title=f"{churn.name} (churn risk)")
        try:
            versions, churn_versions = registry.versions(), churn.versions()
        except RegistryError as exc:
            raise _fail(str(exc)) from exc
        for v in churn_versions:
            c.add_row(v.version, ",".join(v.aliases), f"{v.tags.get('label', '')} "
                      f"{v.tags.get('horizon_days', '')} days", v.tags.get("rows", ""),
                      f"{v.metrics.get('roc_auc', float('nan')):.4f}",
                      f"{v.metrics.get('brier', float('nan')):.4f}", v.gate if v.gate == "passed"
                      else f"{v.gate}: {v.tags.get('gate_reasons', '')}")
        for v in versions:
            sil = v.metrics.get("silhouette")
            t.add_row(v.version, ",".join(v.aliases), v.tags.get("kind", ""), v.tags.get("k", ""),
                      v.tags.get("rows", ""), "" if sil is None else f"{sil:.4f}",
                      v.gate if v.gate == "passed" else
                      f"{v.gate}: {v.tags.get('gate_reasons', '')}", v.tags.get("parent", ""))
        console.print(t)
        console.print(c)

    @models_app.command("show")
    def models_show(version: Annotated[str, typer.Argument(help="Version or alias.")
                                       ] = "champion") -> None:
        """Tags, metrics and segments of one version."""
        from segstream.adapters.registry import Registry, RegistryError

        registry = Registry(_settings())
        try:
            info = registry.show(version)
            model = registry.load(info.version)
        except RegistryError as exc:
            raise _fail(str(exc)) from exc
        console.print_json(json.dumps({"version": info.version, "aliases": list(info.aliases),
                                       "tags": info.tags, "metrics": model.metrics}))
        console.print(segment_table(model, f"segments of version {info.version}"))

    def _registry(kind: str) -> Any:
        from segstream.adapters.registry import ChurnRegistry, Registry

        if kind not in ("segments", "churn"):
            raise _fail(f"--kind {kind}: use segments or churn", 2)
        return (Registry if kind == "segments" else ChurnRegistry)(_settings())

    @models_app.command("promote")
    def models_promote(
        version: Annotated[str, typer.Argument(help="Version to make champion.")],
        force: Annotated[bool, typer.Option(help="Promote even if its gates failed.")] = False,
        kind: Kind = "segments",
    ) -> None:
        """Point the champion alias of the segment (or churn) model at VERSION, only if
        it passed its gates; the serving processes pick it up at their next poll."""
        from segstream.adapters.registry import RegistryError

        registry = _registry(kind)
        try:
            registry.promote(version, force=force)
        except RegistryError as exc:
            raise _fail(str(exc)) from exc
        console.print(f"{registry.name}: champion -> {version}")

    @models_app.command("rollback")
    def models_rollback(kind: Kind = "segments") -> None:
        """Point the champion alias of the segment (or churn) model back at the previous
        champion."""
        from segstream.adapters.registry import RegistryError

        registry = _registry(kind)
        try:
            version = registry.rollback()
        except RegistryError as exc:
            raise _fail(str(exc)) from exc
        console.print(f"{registry.name}: champion -> {version} (rolled back)")
