"""LocalStack service plugins (entry points ``sagemaker:openmart`` and ``sagemaker-runtime:openmart``),
chosen with ``PROVIDER_OVERRIDE_SAGEMAKER=openmart`` and ``PROVIDER_OVERRIDE_SAGEMAKER_RUNTIME=openmart``."""

from localstack.services.plugins import Service, aws_provider


@aws_provider(api="sagemaker", name="openmart")
def sagemaker_openmart() -> Service:
    from openmart_localstack_sagemaker.provider import SageMakerControl

    provider = SageMakerControl()
    return Service.for_provider(provider, dispatch_table_factory=lambda p: p.dispatch_table())


@aws_provider(api="sagemaker-runtime", name="openmart")
def sagemaker_runtime_openmart() -> Service:
    from openmart_localstack_sagemaker.provider import SageMakerRuntime

    provider = SageMakerRuntime()
    return Service.for_provider(provider, dispatch_table_factory=lambda p: p.dispatch_table())
