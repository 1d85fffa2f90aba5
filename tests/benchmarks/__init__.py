"""streamvisor's benchmark harness: ``python -m tests.benchmarks`` (or ``make bench``).

Prints one table of peers measured in the same run (see ``README.md`` in this directory for
what each column means and how it is measured). Extra benchmarks are modules
``tests/benchmarks/bench_*.py`` exposing ``run(repeats, quick) -> list[dict]``.
"""

__all__: list[str] = []
