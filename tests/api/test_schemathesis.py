"""Property-based API fuzzing from the gateway's own OpenAPI schema: no input gives a 500.

A bounded number of examples per operation keeps the file fast on 2 cores (CI).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.api.conftest import GatewayStarter
from tests.support.vllm_server import VLLMServer

MAX_EXAMPLES = 15


@pytest.fixture(scope="module")
def fuzzed_gateway(api_vllm: VLLMServer, module_gateway: GatewayStarter) -> str:
    return module_gateway(api_vllm, max_input_chars=200, default_max_tokens=7 * 8)


def test_no_input_makes_a_server_error(fuzzed_gateway: str) -> None:
    # Hypothesis drives each operation's strategy directly: schemathesis' pytest
    # plugin does not support this pytest version.
    schema = schemathesis.openapi.from_url(f"{fuzzed_gateway}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/audio/speech" for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=fuzzed_gateway, checks=[not_a_server_error], timeout=20)

        check()
