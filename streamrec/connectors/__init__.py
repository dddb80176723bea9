"""Everything that talks to Kafka, Cassandra and files."""
