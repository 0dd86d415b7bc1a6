"""Reference deployments that tests, benchmarks, notebooks and the quickstart run for real:
scikit-learn models behind the Algorithmia API shape, and behind a single-record FastAPI route."""
