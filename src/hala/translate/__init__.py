"""Translation of conversations, segment by segment: stages 2 (teacher) and 4 (translator)."""
