"""One module per stage: ``shard_plan`` (the input cut into shards), ``download``, ``downsample``,
``optical_flow``, ``subset``; ``shard_stage`` is what they share."""
