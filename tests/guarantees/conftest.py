from tests.registration.conftest import make_working_group

__all__ = ["make_working_group"]
