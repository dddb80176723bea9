from setuptools import find_packages, setup

setup(
    name="streamrec",
    version="0.1.0",
    description="Real-time recommendations: Kafka -> PyFlink keyed state -> vectorized top-k -> Cassandra",
    packages=find_packages(include=["streamrec", "streamrec.*"]),
    package_data={"streamrec.localstack": ["templates/*", "maven/*.xml"], "streamrec.service": ["static/*"]},
    python_requires=">=3.9,<3.13",
    install_requires=[
        "apache-flink==2.2.1",
        "numpy>=1.24,<2.2",
        "pandas>=2.0",
        "pyarrow>=14",
        "scipy>=1.10",
        "cassandra-driver==3.30.1",
        "kafka-python>=2.2,<4",
        # the codecs kafka-python decompresses with: records from any producer (lz4, snappy, zstd)
        "lz4>=4",
        "python-snappy>=0.7",
        "zstandard>=0.21",
        "click>=8.1",
        "rich>=13",
        "pyyaml>=6",
        "threadpoolctl>=3.1",  # BLAS pinned to one thread per Python worker (and in `bench pieces`)
        "faiss-cpu>=1.8",  # approximate top-k for large catalogs (model.ranking)
        "matplotlib>=3.7",  # `streamrec evaluate --plot`
        # `streamrec serve`: the HTTP API, its server and its Prometheus metrics
        "fastapi>=0.110",
        "uvicorn[standard]>=0.29",  # httptools + uvloop: ~0.7 instead of ~0.9 ms of CPU per request (h11 + asyncio)
        "prometheus-client>=0.20",
        "orjson>=3.9",  # the recommendations answer's JSON, ~7x cheaper than json.dumps
        "swagger-ui-py>=25.7",  # Swagger UI's files: /docs works with no internet access
    ],
    extras_require={
        # hypothesis: the fuzz tests; confluent-kafka (librdkafka): the e2e tests' producer that is
        # not the project's own (every codec, transactions)
        "dev": ["pytest>=8", "ruff>=0.6", "mypy>=1.10", "pandas-stubs", "hypothesis>=6.100", "confluent-kafka>=2.3",
                # FastAPI's TestClient; the demo page's browser test (with Debian's chromium)
                "httpx>=0.27", "selenium>=4.20",
                # the Kubernetes JSON schemas (offline) that deploy/k8s is validated against
                "kubernetes-validate>=1.30"],
        # `make bench`: plots, py-spy profiles and the load generator's Kafka client (faiss and
        # threadpoolctl are core dependencies)
        "bench": ["matplotlib>=3.7", "py-spy>=0.3.14", "confluent-kafka>=2.3"],
    },
    entry_points={"console_scripts": ["streamrec=streamrec.cli:main"]},
)
