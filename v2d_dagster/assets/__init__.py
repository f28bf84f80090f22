"""One module per stage: ``shard_plan`` (the url list cut into shards), ``download``; more to come."""
