"""Runners: a job's shards on the local process pool, Spark or Slurm, with progress, summary and W&B."""
