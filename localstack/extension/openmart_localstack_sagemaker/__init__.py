"""SageMaker for LocalStack: control plane from moto, models really served, Data Capture to S3."""
