"""`hala run`: the whole recipe from one YAML file, stage by stage, with caching and lineage."""
