"""The thin PyFlink adapters around :mod:`streamrec.model`: they only translate Flink's calling
convention (rows, state, side outputs, batches of bytes) into calls of the pure model."""
