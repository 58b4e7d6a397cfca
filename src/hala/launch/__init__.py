"""Running one record stage (translate, judge, generate) as N shards, and putting them together.

- `config`: the launch settings every sharded stage's config shares (`ShardedConfig`: `shard`,
  `executor`, `workers`, `submit`, `slurm`, `ray`), none of which changes a row of the output;
- `executors`: `local` worker processes, a `slurm` job array, `ray` tasks, each running
  `hala STAGE --config FILE shard=I/N`;
- `merge`: `merge_shards`, one dataset in `OUT/merged/` from every finished shard of `OUT`.

A stage knows nothing of executors beyond `launch(stage, cfg)`; executors reach the stage through
the command table (`hala.commands`), so no stage module and this folder import each other.
"""
