"""The recommendation model: parsing and validation rules, the update rule, filters, top-k,
trending and A/B variants. Pure Python + numpy (no pyflink import): the job's Flink adapters
(:mod:`streamrec.udfs`), ``evaluate``, ``verify`` and the bench all call these functions."""
