"""The Flink topology (`build_pipeline`) and the job entry point (`main`)."""
