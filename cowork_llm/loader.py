"""load_config(): file → environment → defaults. (stub)"""


def load_config(path=None):  # type: ignore[no-untyped-def]
    raise NotImplementedError
