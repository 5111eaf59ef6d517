"""``bot-bridge``: the command line mirrors what the web offers.

``predict`` analyses files exactly as ``POST /api/predict`` does (same
service, same store); ``serve`` runs the web server; ``model`` fetches real
weights or writes random ones for tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

import click

from .cli_users import users
from .config import DEFAULT_PRECISION, ConfigError, load_settings
from .emotions import EMOTION_KEYS
from .malloc import reexec_with_fast_malloc


def main() -> None:
    reexec_with_fast_malloc(["-m", "bot_bridge", *sys.argv[1:]])
    cli(prog_name="bot-bridge")


@click.group()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="settings file (default config/bot-bridge.yaml)")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """bot-bridge: how does the speaker sound? (emotion2vec+, 9 emotions)

    ``serve`` logs at ``log_level``; the other commands are for a person at a
    terminal and log warnings only (``predict -v`` for more).
    """
    from .logs import configure_logging

    try:
        settings = load_settings(config_file)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    quiet = ctx.invoked_subcommand != "serve" and logging.getLevelName(settings.log_level) < logging.WARNING
    configure_logging(settings, logging.WARNING if quiet else None)
    ctx.obj = settings


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--granularity", type=click.Choice(["utterance", "timeline"]), default="utterance", show_default=True)
@click.option("--embedding", is_flag=True, help="also compute and save the embedding (embedding.npy)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per file on stdout")
@click.option("-v", "--verbose", count=True, help="log what happens on stderr: -v steps, -vv everything")
@click.pass_obj
def predict(settings, files: tuple[str, ...], granularity: str, embedding: bool, as_json: bool, verbose: int) -> None:
    """Analyse audio FILES (a folder: the audio files under it); keeps going past bad ones, exits 1 if any failed.

    Prints a table, one row per file with the folder its result was saved in
    (or with --json one JSON object per file); only results go to stdout.
    """
    from tqdm import tqdm

    from .cli_results import NoAudioFiles, ResultTable, audio_files
    from .errors import BotBridgeError, ModelUnavailable
    from .service import Service

    if verbose:
        logging.getLogger().setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    try:
        names = audio_files(files)
    except NoAudioFiles as error:
        raise click.UsageError(str(error)) from None
    service = Service(settings)
    try:
        service.model
    except ModelUnavailable as error:
        raise click.ClickException(f"the model cannot be loaded: {error.detail}") from None
    failed = 0
    table = ResultTable(names)
    progress = tqdm(names, unit="file", file=sys.stderr, disable=len(names) < 2)
    if not as_json:
        _print(progress, table.header())
    for name in progress:
        try:
            result = service.analyse(
                _read(name), file_name=Path(name).name, timeline=granularity == "timeline", embedding=embedding, origin="cli"
            )
        except BotBridgeError as error:
            failed += 1
            _print(progress, _json_line({"file": name, "error": error.to_dict()}) if as_json else table.error(name, error))
            continue
        if as_json:
            _print(progress, _json_line({"file": name, **result.to_dict(include_embedding=embedding)}))
        else:
            folder = Path(service.store.result_row(result.id).output_dir)
            page = f"{settings.public_url}/results/{result.id}" if settings.public_url else None
            _print(progress, table.result(name, result, folder, page))
    service.close()
    sys.exit(1 if failed else 0)


@cli.command()
@click.option("--host", help="default: server.host")
@click.option("--port", type=int, help="default: server.port")
@click.option("--role", type=click.Choice(["all", "web", "worker"]), help="default: server.role")
@click.option("--processes", type=click.IntRange(1, 64), help="default: server.processes")
@click.pass_obj
def serve(settings, host: str | None, port: int | None, role: str | None, processes: int | None) -> None:
    """Run the service: web server, chat webhooks and model workers (--role all), or one of the two."""
    from .server import run

    overrides = {"host": host, "port": port, "role": role, "processes": processes}
    settings.server = settings.server.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    try:
        run(settings)
    except ConfigError as error:  # storage that cannot be written is found at start (bot_bridge/storage.py)
        raise click.ClickException(str(error)) from None


@cli.group()
def model() -> None:
    """Fetch real weights, or write random ones for tests and benchmarks."""


@model.command("download")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--hub", type=click.Choice(["ms", "hf"]), default="ms", show_default=True)
def model_download(name: str, directory: str, hub: str) -> None:
    """Download NAME (iic/emotion2vec_plus_large, iic/SenseVoiceSmall, ...) into DIRECTORY; needs internet."""
    from .hearing.model_files import check_model_dir, download_model, kind_of

    kind = kind_of(name)
    try:
        path = check_model_dir(download_model(name, directory, hub), kind)
    except Exception as error:  # noqa: BLE001 - hub clients raise many kinds; all mean "not downloaded"
        raise click.ClickException(f"could not download {name} from {hub}: {error}") from None
    click.echo(f"{name} saved in {path}; use it with {kind.variable}={path.resolve()}")


@model.command("make-random")
@click.option("--kind", type=click.Choice(["emotion2vec", "sensevoice"]), default="emotion2vec", show_default=True)
@click.option("--preset", type=click.Choice(["tiny", "base", "large", "small"]), required=True,
              help="emotion2vec: tiny, base or large; sensevoice: tiny or small (the published size)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bias", "biases", multiple=True, metavar="EMOTION=OFFSET",
              help="lean towards EMOTION: add OFFSET to its logit (e.g. angry=3); repeatable; recorded in the model")
@click.argument("directory", type=click.Path(file_okay=False))
def model_make_random(kind: str, preset: str, seed: int, biases: tuple[str, ...], directory: str) -> None:
    """Write a RANDOM-WEIGHT model in the published format (its labels and words are meaningless)."""
    from .hearing import model_files, sensevoice_files

    if kind == "sensevoice" and biases:
        raise click.BadParameter("only an emotion2vec model has an emotion head to bias", param_hint="--bias")
    presets = {"emotion2vec": model_files.PRESETS, "sensevoice": sensevoice_files.PRESETS}[kind]
    if preset not in presets:
        raise click.BadParameter(f"{kind} has the presets {', '.join(presets)}", param_hint="--preset")
    bias = _offsets(biases)
    try:
        if kind == "sensevoice":
            path = sensevoice_files.make_random_sensevoice(preset, directory, seed)
        else:
            path = model_files.make_random_model(preset, directory, seed, bias)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--bias") from None
    leaning = f", head biased {', '.join(biases)}" if bias else ""
    click.echo(f"RANDOM-WEIGHT {kind} {preset} model written to {path} (for tests and benchmarks only{leaning})")


@cli.group()
def chat() -> None:
    """Chat voice notes: how many were answered, and which failed."""


@chat.command("status")
@click.option("--failed", "show_failed", type=int, default=10, show_default=True, help="list this many recent failures")
@click.pass_obj
def chat_status(settings, show_failed: int) -> None:
    """Voice notes per platform and state (queued, replied, failed, ...), then the latest failures."""
    from .remembering.store import NoteStatus, Store

    store = Store(settings.resolved_database_url, settings.outputs_dir)
    counts = store.voice_note_counts()
    if not counts:
        click.echo("no chat voice notes yet")
    for (platform_name, status), count in sorted(counts.items()):
        click.echo(f"{platform_name:10} {status:12} {count}")
    for status in (NoteStatus.FAILED, NoteStatus.UNCONFIRMED):
        for note in store.voice_notes(status=status, limit=show_failed):
            click.echo(f"{status} {note.platform} note {note.id} (chat {note.chat_id}, {note.updated_at:%Y-%m-%d %H:%M}): "
                       f"{note.error_code}: {note.error_detail}")
    store.close()


# --- escalations and daily digests (bot_bridge/acting/escalation.py, digest.py) ---


@cli.command()
@click.option("--now", "right_now", is_flag=True, help="sweep now, as the scheduler does every sweep_interval_min")
@click.option("--dry-run", is_flag=True, help="print the alerts instead of sending them; nothing is recorded")
@click.pass_obj
def escalate(settings, right_now: bool, dry_run: bool) -> None:
    """Send every target the cases it has still to receive (one message each), and update the messages of cases
    that changed, as the scheduler's sweep does."""
    from .acting.escalation import Escalator
    from .acting.scheduler import utc_now

    if not right_now:
        raise click.UsageError("say --now: `bot-bridge serve` sweeps on its own every escalation.sweep_interval_min")
    with _alert_targets(settings) as (store, targets):
        escalator = Escalator(store, settings, targets)
        if dry_run:
            for key, messages in escalator.preview(utc_now()).items():
                _print_messages(targets[key], messages)
            return
        for key, count in escalator.sweep(utc_now()).items():
            click.echo(f"{targets[key].name}: {count} case(s) sent")


@cli.command()
@click.option("--now", "right_now", is_flag=True, help="send the digest of --date now, whatever the time of day")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="default: today, in each target's timezone")
@click.option("--dry-run", is_flag=True, help="print the digests instead of sending them; nothing is recorded")
@click.pass_obj
def digest(settings, right_now: bool, day, dry_run: bool) -> None:
    """Send the daily digests that are due, as the scheduler does each minute (or, with --now, --date's).

    The digest of a date covers the 24 hours up to that date's ``at`` time, so
    ``--now`` on the day itself sends a period that has not ended yet: the
    output says which period, and when it ends later. A digest already sent
    for a target and date is never sent again.
    """
    from .acting.digest import Digests, Period
    from .acting.scheduler import utc_now
    from .remembering.alert_store import DigestState

    with _alert_targets(settings) as (store, targets):
        digests = Digests(store, settings, targets)
        now = utc_now()
        if not (right_now or dry_run):
            for key, outcome in digests.send_due(now).items():
                click.echo(f"{targets[key].name}: {outcome}")
            return
        for target in digests.targets.values():
            target_day = day.date() if day else now.astimezone(target.zone).date()
            period = Period.of(target_day, settings.digest.targets[target.key].at, target.zone)
            if dry_run:
                preview = digests.preview(target, target_day)
                texts, chart = preview or (["(no voice notes that day: skipped, as digest.skip_empty says)"], None)
                click.echo(f"digest of {_period_words(period, target.zone)}")
                _print_messages(target, texts + ([f"[chart: {len(chart):,} bytes of PNG]"] if chart else []))
            elif target.sender is not None:
                outcome = digests.send(target, target_day, now)
                words = f"the digest of {_period_words(period, target.zone)}"
                if now < period.end and outcome == DigestState.SENT:
                    words += (f"; sent before its period ends, so notes from now until "
                              f"{period.end.astimezone(target.zone):%H:%M} will be in no digest")
                click.echo(f"{target.name} {target_day}: {outcome or 'sent before, not again'} ({words})")


# --- feedback: calibration and the labelled data set (bot_bridge/acting/calibration.py, remembering/labels.py) ---


@cli.command()
@click.option("--emotion", type=click.Choice(EMOTION_KEYS), help="only this emotion's thresholds")
@click.option("--precision", "target", type=click.FloatRange(0, 1, min_open=True), default=DEFAULT_PRECISION,
              show_default=True, help="the share of flagged notes that should be right")
@click.pass_obj
def calibrate(settings, emotion: str | None, target: float) -> None:
    """How right each escalation threshold has been by people's labels, and the lowest that reaches --precision."""
    from .acting.calibration import calibrate as measure
    from .cli_labels import calibration_report

    with _store(settings) as store:
        calibrations = measure(store, settings.escalation, target=target, emotion=emotion)
    if not calibrations:
        raise click.ClickException(f"no escalation rule has a threshold for {emotion} "
                                   "(escalation.default_rule, escalation.rules)")
    click.echo("\n".join(calibration_report(calibrations, target)))


@cli.command("export-labels")
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_obj
def export_labels(settings, directory: str) -> None:
    """Write the labelled notes to DIRECTORY (new or empty): labels.csv, audio/ and embeddings.npy."""
    from .cli_labels import export_report
    from .remembering.label_export import ExportError
    from .remembering.label_export import export_labels as export

    with _store(settings) as store:
        try:
            summary = export(store, Path(directory))
        except ExportError as error:
            raise click.ClickException(str(error)) from None
    click.echo("\n".join(export_report(summary)))


@cli.command()
@click.option("--sender", metavar="PLATFORM:ID", help="every note of this chat user, with its results")
@click.option("--chat", metavar="PLATFORM:ID", help="every note of this chat, with its results")
@click.option("--before", metavar="DATE", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="every note and result (uploads too) from before this UTC date")
@click.option("--dry-run", is_flag=True, help="only count what would be deleted")
@click.pass_obj
def purge(settings, sender: str | None, chat: str | None, before, dry_run: bool) -> None:
    """Delete notes, results, transcripts, recordings and output folders for good (one audit entry remains).

    Exactly one of --sender, --chat and --before. Prints how many notes and
    results were (with --dry-run: would be) deleted.
    """
    import getpass
    from datetime import timezone

    from .remembering.forgetting import Forgetting, Selection

    chosen = [option for option in (sender, chat, before) if option is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --sender PLATFORM:ID, --chat PLATFORM:ID, --before DATE")
    if before is not None:
        selection = Selection.before(before.replace(tzinfo=timezone.utc))
    else:
        platform, _, key = (sender or chat).partition(":")
        if not platform or not key:
            raise click.UsageError(f"{sender or chat!r}: write PLATFORM:ID, such as telegram:123456")
        selection = (Selection.of_sender if sender else Selection.of_chat)(platform, key)
    with _store(settings) as store:
        forgetting = Forgetting(store, batch=settings.retention.batch)
        if dry_run:
            counted = forgetting.count(selection)
        else:
            counted = forgetting.forget(selection, actor=getpass.getuser(), via="cli")
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {counted.notes} voice notes and {counted.results} results")


@contextlib.contextmanager
def _store(settings):
    from .remembering.store import Store

    store = Store(settings.resolved_database_url, settings.outputs_dir)
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def _alert_targets(settings):
    """The store and the configured targets, for one command."""
    from .acting.alerting import build_targets
    from .acting.worker import build_adapters

    if not settings.targets:
        raise click.ClickException("no targets are configured; see config/escalation.example.yaml")
    with _store(settings) as store:
        yield store, build_targets(settings, build_adapters(settings))


def _period_words(period, zone) -> str:
    """``2026-03-03 18:00 to 2026-03-04 18:00 Europe/London``."""
    return f"{period.start.astimezone(zone):%Y-%m-%d %H:%M} to {period.end.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}"


def _print_messages(target, messages: list[str]) -> None:
    click.echo(f"=== to {target.name} ({target.settings.platform}): {len(messages)} message(s) ===")
    for message in messages:
        click.echo(message + "\n")


def _platform_group(name: str) -> click.Group:
    """``bot-bridge <platform> set-webhook URL``, for a platform whose API sets its own webhook."""

    @click.group(name=name, help=f"The {name} chat platform.")
    def group() -> None:
        pass

    @group.command("set-webhook")
    @click.argument("url")
    @click.pass_obj
    def set_webhook(settings, url: str) -> None:
        """Have the platform deliver messages to URL (https://your.host/webhooks/...)."""
        from .acting.worker import build_adapters
        from .chat.outbound import OutboundError

        adapter = build_adapters(settings).get(name)
        if adapter is None:
            raise click.ClickException(f'{name} is not configured; see docs/platforms/{name}.md')
        try:
            click.echo(adapter.set_webhook(url))
        except (OutboundError, ValueError) as error:  # ValueError: the adapter's mode takes no webhook
            raise click.ClickException(str(error)) from None

    return group


def _add_platform_commands() -> None:
    from adapters import adapter_classes

    for name, adapter_class in adapter_classes().items():
        if adapter_class.can_set_webhook():
            cli.add_command(_platform_group(name))


_add_platform_commands()
cli.add_command(users)


def _read(name: str) -> bytes:
    from .errors import BotBridgeError

    try:
        return Path(name).read_bytes()
    except OSError as error:
        raise BotBridgeError("invalid_request", str(error), problem=f"cannot read {name}: {error.strerror}") from None


def _json_line(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False)


def _offsets(biases: tuple[str, ...]) -> dict[str, float]:
    """``("angry=3", "sad=-1")`` -> ``{"angry": 3.0, "sad": -1.0}`` (``model make-random --bias``)."""
    offsets = {}
    for bias in biases:
        emotion, _, offset = bias.partition("=")
        try:
            offsets[emotion.strip().lower()] = float(offset)
        except ValueError:
            raise click.BadParameter(f"{bias!r} is not EMOTION=OFFSET (e.g. angry=3)", param_hint="--bias") from None
    return offsets



def _print(progress, text: str) -> None:
    """A line of results on stdout, below the progress bar (which is on stderr) when there is one."""
    if progress.disable:
        click.echo(text)
    else:
        progress.write(text, file=sys.stdout)
