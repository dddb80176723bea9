"""The model and the per-record logic: pure Python + numpy, importable without a JVM.

The Flink job, the offline tools and the tests all call these functions; there is one
implementation of the model.
"""
