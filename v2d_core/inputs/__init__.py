"""What comes in: url lists in every format 1.3.0 reads, and the shard specs cut from them."""
