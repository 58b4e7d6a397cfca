"""What a `hala` command exits with: one rule, by the type of the error, for every command.

- 0: done. Rows turned down by a verdict (QA, filters, the judge) are in rejected/ with their
  reasons; when all of them were, a loud warning.
- 1: an error hala names in one line (`ValueError`, `FileNotFoundError`, `ShardsFailed`): bad,
  empty or missing input, a folder in use, a model that fails a check, failed shards; also a run
  that finished but could read not one row.
- 2: a bad config, override, flag or recipe (`ConfigError`, and click's usage errors): the file,
  the dotted key, the valid keys.
- 3: the run went through, but engine requests failed after their retries (`RequestsFailed`):
  their rows are in rejected/, no manifest is written; rerun the same command to retry only those.

`hala run` exits with the status of the stage that failed (`StageFailed.status`): a stage that lost
rows to engine errors makes the chain exit 3, as the stage's own command does. The stage processes
of `hala run` (`hala.run.stage_main`) follow the same rule. Any other exception is a bug and keeps
its traceback (exit 1).
"""

from __future__ import annotations

from pathlib import Path


def exit_code(error: BaseException) -> int | None:
    """The exit status for an error hala explains in its message; None for one that is a bug."""
    from hala.config import ConfigError
    from hala.data.units import RequestsFailed
    from hala.run.runner import StageFailed
    from hala.launch.executors import ShardsFailed

    if isinstance(error, StageFailed):
        return error.status
    rule = [  # the first match wins: a ConfigError is a ValueError too
        (ConfigError, 2),
        (RequestsFailed, RequestsFailed.exit_code),
        ((ValueError, FileNotFoundError, ShardsFailed), 1),
    ]
    return next((code for kinds, code in rule if isinstance(error, kinds)), None)


def nothing_kept(counts: dict[str, int], out: Path) -> tuple[str | None, bool]:
    """(why a data stage that finished kept no row, whether that is a failure); (None, False) when
    it kept some, or is not a data stage.

    Inputs of which not one row could be read are a failure (exit 1), even though every step
    worked; the manifest and rejects are kept, so the reasons can be read and a rerun is still
    skipped. When rows were read but all were turned down by a verdict (QA, filters, the judge), the
    run did its job: a warning says so loudly and the exit code stays 0."""
    from hala.data.formats import BAD_KINDS

    kept = counts.get("rows_out", counts.get("kept"))
    if kept is None or kept > 0:
        return None, False
    rejected = counts.get("rejected", 0)
    if rejected:
        kinds = {k.removeprefix("rejected_"): v for k, v in counts.items() if k.startswith("rejected_")}
        shown = ", ".join(f"{k}={v}" for k, v in kinds.items())
        unreadable = all(k in BAD_KINDS for k in kinds)
        why = f"no row was kept: all {rejected} were rejected ({shown}); the reasons are in {out / 'rejected'}"
        return why, unreadable
    if counts.get("units", 1) == 0:  # a shard that got no unit of a larger run: nothing to do is right
        return None, False
    return "no row was kept: the inputs hold no records (only blank lines?)", True


def remove_if_unused(folder: Path) -> None:
    """Remove an output folder a failed command created, when the failure left nothing in it but the
    run stamp and empty folders (a --strict stop at the first row, a refused input): never user data."""
    from hala.data.manifest import RUN_STAMP

    if not folder.is_dir():
        return
    entries = sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    if any(p.is_file() and p != folder / RUN_STAMP for p in entries):
        return
    for path in entries:
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()
