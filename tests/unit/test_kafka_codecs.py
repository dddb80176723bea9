"""Records from any standard producer: the job ships the codec jar its Kafka connector lacks
(zstd-jni), and the kafka-python readers (verify, read_topic) have every codec Kafka supports."""

from __future__ import annotations

import pytest

from streamrec.connectors.kafka import with_codec_jars

pytestmark = pytest.mark.unit


def test_the_zstd_jar_beside_the_connector_goes_with_the_job(tmp_path):
    connector = tmp_path / "flink-sql-connector-kafka-5.0.0-2.2.jar"
    zstd = tmp_path / "zstd-jni-1.5.6-10.jar"
    connector.touch()
    zstd.touch()
    assert with_codec_jars([str(connector)]) == [str(connector), str(zstd)]
    assert with_codec_jars([connector.as_uri()]) == [connector.as_uri(), str(zstd)]
    assert with_codec_jars([str(connector), str(zstd)]) == [str(connector), str(zstd)]  # not twice
    assert with_codec_jars(["/opt/other.jar"]) == ["/opt/other.jar"]
    assert with_codec_jars([]) == []


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_can_decompress_every_codec(codec):
    from kafka import codec as codecs

    has = {"gzip": codecs.has_gzip, "snappy": codecs.has_snappy, "lz4": codecs.has_lz4, "zstd": codecs.has_zstd}
    assert has[codec](), f"{codec}: its Python package is missing (setup.py install_requires)"
    data = b'{"event_id": "e1"}' * 50
    compress = {"gzip": codecs.gzip_encode, "snappy": codecs.snappy_encode, "lz4": codecs.lz4_encode,
                "zstd": codecs.zstd_encode}[codec]
    decompress = {"gzip": codecs.gzip_decode, "snappy": codecs.snappy_decode, "lz4": codecs.lz4_decode,
                  "zstd": codecs.zstd_decode}[codec]
    assert decompress(compress(data)) == data
