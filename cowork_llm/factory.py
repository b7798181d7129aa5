"""create_llm_client(): configuration in, a shared rate-limited client out. (stub)"""


def create_llm_client(config=None, *, path=None):  # type: ignore[no-untyped-def]
    raise NotImplementedError
