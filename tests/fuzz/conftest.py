"""The fuzz suite's hypothesis profiles: every property here runs with one of them.

- `fuzz` (the default, inside `make test`): FUZZ_EXAMPLES examples per property, so the directory
  stays well inside two minutes on a 2-core machine.
- `long` (`make fuzz`, or HYPOTHESIS_PROFILE=long): 200,000 examples per property, no deadline.

The profile is chosen by HYPOTHESIS_PROFILE when it names one of these; properties take it with the
`@fuzz` decorator (`from tests.fuzz.conftest import fuzz`) rather than from `settings.load_profile`,
which would change hypothesis's defaults for every test collected after this directory too.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = 2000
LONG_EXAMPLES = 200_000

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.large_base_example]

settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=_QUIET,
                          print_blob=True)
settings.register_profile("long", max_examples=LONG_EXAMPLES, deadline=None, suppress_health_check=_QUIET,
                          print_blob=True)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz")
if PROFILE not in ("fuzz", "long"):
    PROFILE = "fuzz"

fuzz = settings.get_profile(PROFILE)
# Small pure parsers whose every property runs in microseconds but whose tests hold many properties (cron,
# semver): a fifth of the examples inside `make test`, all of `long` in `make fuzz`.
fuzz_light = fuzz if PROFILE == "long" else settings(fuzz, max_examples=FUZZ_EXAMPLES // 5)

