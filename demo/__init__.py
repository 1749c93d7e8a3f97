"""``make demo``: the main job on a generated sample artifact, no AWS account needed."""
