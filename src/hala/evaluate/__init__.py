"""Stage 7 of the recipe: evaluation.

`hala eval bench` runs the paper's six OALL v2 Arabic benchmarks (0-shot, acc_norm) through
lighteval on local data and puts the paper's reported numbers beside the scores
(`hala.evaluate.bench`). Translation metrics (BLEU/chrF++, `hala eval translation`) are issue #5.
"""
