"""The sandbox suites run the sandbox as a developer does: with ``DEBUG`` on.

The test settings keep ``DEBUG`` off like any Django test run, and many tests here replace
``VERIFICATION_LINK_SANDBOX`` whole, which would drop ``ALLOW_WITHOUT_DEBUG``; the sandbox would
then answer 404 to everything. ``test_sandbox_guard`` turns ``DEBUG`` back off to show that.
"""

import pytest


@pytest.fixture(autouse=True)
def _debug_on(settings):
    settings.DEBUG = True
