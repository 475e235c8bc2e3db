"""The README's main job until the pipeline exists: `smtp-checks check` against local servers."""
