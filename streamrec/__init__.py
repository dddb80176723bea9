"""streamrec: real-time recommendations with Kafka, PyFlink keyed state and Cassandra."""

__version__ = "0.1.0"
