"""Diversity on hashed n-gram sentence vectors: vectors, approximate kNN novelty, greedy diverse
selection and dataset-level metrics. Pure numpy/polars functions; the stages live in
`curate/stages/diversity.py` and `curate/stages/diverse_select.py`."""
