"""Every patch declares the upstream versions it was written against; an
installed version that differs names the patch to re-check."""

import pytest

from signaling import speedups
from signaling.speedups import installed_version, name_of
from signaling.ws import channels_consumer, channels_layer

# The speedups, and the two modules that replace parts of Channels by
# subclassing (not patching) it.
DECLARING = [*speedups.SPEEDUPS, channels_consumer, channels_layer]


@pytest.mark.parametrize("module", DECLARING, ids=name_of)
def test_installed_upstream_versions_are_the_declared_ones(module):
    for package, declared in module.UPSTREAM.items():
        installed = installed_version(package)
        assert installed == declared, (
            f"re-check {module.__name__} ({module.__file__}): written against "
            f"{package} {declared}, installed {installed}; update UPSTREAM once "
            "its tests pass in both SIGNALING_SPEEDUPS modes"
        )


@pytest.mark.parametrize("module", speedups.SPEEDUPS, ids=name_of)
def test_each_speedup_says_what_it_touches_and_how_to_apply_it(module):
    assert module.UPSTREAM and module.TOUCHES
    assert callable(module.apply)
    assert "Upstream:" in module.__doc__ and "Touches:" in module.__doc__
